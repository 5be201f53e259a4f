package warehouse

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Embedded ClickHouse (chDB) runs as clickhouse-local does: it ignores user_files_path, so
// file(), the file() table function and an unknown table of the default database read any
// file the process can read, and url(), s3(), remote() and friends reach the network. Sluice
// gives chDB a configuration that takes those away from the process (measured on chDB 26.7):
//
//   - the one user chDB runs as has every grant but the source grants (REVOKE SOURCES: FILE,
//     URL, REMOTE, S3, MYSQL, ...) and the table-engine grants: reading or writing through a
//     table function, a File/URL-like engine or the file fallback of the default database
//     fails with ACCESS_DENIED (code 497);
//   - user_files_path and user_scripts_path point at empty folders of the data directory,
//     and remote_url_allow_hosts allows no host.
//
// What remains, because chDB enforces no grant or path there in its local mode: the scalar
// function file(), and SELECT ... INTO OUTFILE. Sluice's analysis refuses both wherever users'
// SQL or a definition stands (see docs/security.md).

// EmbeddedOldPartsLifetime is how long (seconds) chDB keeps a part on disk after a merge or a
// move replaced it: the server's default, where chDB's own is 0. A step killed inside a move
// is decided by finding the moved parts in the Data Source, which a merge may have swallowed
// meanwhile; the parts it merged stay visible (as outdated parts) this long after the merge
// (see services/executor/dataflow/moves.go).
const EmbeddedOldPartsLifetime = 480

// embeddedConfigDir is the folder of the data directory holding Sluice's chDB configuration.
const embeddedConfigDir = "sluice-config"

const embeddedConfigXML = `<clickhouse>
    <!-- Written by Sluice at every start: changes are overwritten. -->
    <users_config>%s</users_config>
    <user_files_path>%s</user_files_path>
    <user_scripts_path>%s</user_scripts_path>
    <remote_url_allow_hosts><host>sluice-no-host.invalid</host></remote_url_allow_hosts>
    <merge_tree><old_parts_lifetime>%d</old_parts_lifetime></merge_tree>
</clickhouse>
`

const embeddedUsersXML = `<clickhouse>
    <!-- Written by Sluice at every start: changes are overwritten. -->
    <profiles><default></default></profiles>
    <quotas><default></default></quotas>
    <users>
        <default>
            <password></password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <grants>
                <query>GRANT ALL ON *.*</query>
                <query>REVOKE SOURCES ON *.*</query>
                <query>REVOKE TABLE ENGINE ON *</query>
            </grants>
        </default>
    </users>
</clickhouse>
`

// writeEmbeddedConfig writes the configuration into dataDir and returns the chDB argument that
// loads it.
func writeEmbeddedConfig(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, embeddedConfigDir)
	files := filepath.Join(dir, "user_files") + "/"
	scripts := filepath.Join(dir, "user_scripts") + "/"
	for _, d := range []string{dir, files, scripts} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("warehouse: chDB configuration: %w", err)
		}
	}
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	users := filepath.Join(dir, "users.xml")
	config := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(users, []byte(embeddedUsersXML), 0o644); err != nil {
		return "", fmt.Errorf("warehouse: chDB configuration: %w", err)
	}
	text := fmt.Sprintf(embeddedConfigXML, esc.Replace(users), esc.Replace(files), esc.Replace(scripts), EmbeddedOldPartsLifetime)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("warehouse: chDB configuration: %w", err)
	}
	return "--config-file=" + config, nil
}
