package catalog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/auth"
)

// store keeps the catalog's state in NATS KV:
//
//	ws.<workspace>                          workspaceRecord
//	res.<workspace>.<kind>.<name>           resourceRecord (kind: ds or pipe)
//	file.<workspace>.<path>.<version>       fileRecord, one key per version (path base64url)
//
// Every version of every datafile has its own key, so none is ever overwritten.
type store struct {
	kv jetstream.KeyValue
	// stream is the bucket's stream, for the revision of a workspace's resources.
	stream jetstream.Stream
}

// resourcesRevision is the stream sequence of the last change (a put or a delete) of any of a
// workspace's resource records; 0 when it never had any. Any change of the records changes it.
func (s *store) resourcesRevision(ctx context.Context, ws string) (uint64, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, "$KV."+BucketCatalog+".res."+ws+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("catalog store: revision of workspace %s: %w", ws, err)
	}
	return m.Sequence, nil
}

type workspaceRecord struct {
	Name       string    `json:"name"`
	Database   string    `json:"database"`
	CreateTime time.Time `json:"create_time"`
}

// resourceKind tells Data Sources and Pipes apart in keys and records.
type resourceKind string

const (
	kindDataSource resourceKind = "ds"
	kindPipe       resourceKind = "pipe"
)

// resourceRecord is a deployed resource: the datafile it came from (with the .incl files it
// included, so that it can be parsed again on its own) and what was created for it in
// ClickHouse.
type resourceRecord struct {
	Kind        resourceKind      `json:"kind"`
	Name        string            `json:"name"`
	ID          string            `json:"id"`
	Path        string            `json:"path"`
	FileVersion int64             `json:"file_version"`
	Content     string            `json:"content"`
	Includes    map[string]string `json:"includes,omitempty"`
	// Fingerprint identifies the deployed definition: equal fingerprints mean nothing to do.
	Fingerprint string `json:"fingerprint"`
	// DDL are the statements that created the resource's ClickHouse objects as deployed (a
	// materialized pipe's view), kept so that dropping them can be undone.
	DDL        []string  `json:"ddl,omitempty"`
	UpdateTime time.Time `json:"update_time"`
	// Cutover is the cut-over a materialized pipe's view handles (CutOverView); a push that
	// changes the pipe replaces the view without it.
	Cutover *viewCutover `json:"cutover,omitempty"`
}

type fileRecord struct {
	Path       string    `json:"path"`
	Version    int64     `json:"version"`
	Content    string    `json:"content"`
	Deleted    bool      `json:"deleted,omitempty"`
	CreateTime time.Time `json:"create_time"`
}

var errNotFound = errors.New("not found")

func wsKey(name string) string { return "ws." + name }
func resKey(ws string, k resourceKind, name string) string {
	return fmt.Sprintf("res.%s.%s.%s", ws, k, name)
}
func filePrefix(ws, path string) string {
	return fmt.Sprintf("file.%s.%s", ws, base64.RawURLEncoding.EncodeToString([]byte(path)))
}
func fileKey(ws, path string, version int64) string {
	return fmt.Sprintf("%s.%010d", filePrefix(ws, path), version)
}

func (s *store) getJSON(ctx context.Context, key string, v any) (uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, errNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("catalog store: get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("catalog store: decode %s: %w", key, err)
	}
	return e.Revision(), nil
}

func (s *store) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("catalog store: put %s: %w", key, err)
	}
	return nil
}

// createJSON writes key only if it does not exist; it reports false when it already did.
func (s *store) createJSON(ctx context.Context, key string, v any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	if _, err := s.kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("catalog store: create %s: %w", key, err)
	}
	return true, nil
}

func (s *store) delete(ctx context.Context, key string) error {
	if err := s.kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("catalog store: delete %s: %w", key, err)
	}
	return nil
}

func (s *store) keys(ctx context.Context, filter string) ([]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("catalog store: list %s: %w", filter, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

func (s *store) workspace(ctx context.Context, name string) (workspaceRecord, error) {
	var w workspaceRecord
	_, err := s.getJSON(ctx, wsKey(name), &w)
	return w, err
}

func (s *store) workspaces(ctx context.Context) ([]workspaceRecord, error) {
	keys, err := s.keys(ctx, "ws.*")
	if err != nil {
		return nil, err
	}
	out := make([]workspaceRecord, 0, len(keys))
	for _, k := range keys {
		var w workspaceRecord
		if _, err := s.getJSON(ctx, k, &w); err == nil {
			out = append(out, w)
		}
	}
	return out, nil
}

// resources returns the deployed resources of a workspace by kind and name.
func (s *store) resources(ctx context.Context, ws string) (map[resourceKind]map[string]resourceRecord, error) {
	keys, err := s.keys(ctx, "res."+ws+".>")
	if err != nil {
		return nil, err
	}
	out := map[resourceKind]map[string]resourceRecord{kindDataSource: {}, kindPipe: {}}
	for _, k := range keys {
		var r resourceRecord
		if _, err := s.getJSON(ctx, k, &r); err != nil {
			if errors.Is(err, errNotFound) {
				continue
			}
			return nil, err
		}
		out[r.Kind][r.Name] = r
	}
	return out, nil
}

// fileVersions lists a file's versions, newest first.
func (s *store) fileVersions(ctx context.Context, ws, path string) ([]fileRecord, error) {
	keys, err := s.keys(ctx, filePrefix(ws, path)+".*")
	if err != nil {
		return nil, err
	}
	out := make([]fileRecord, 0, len(keys))
	for i := len(keys) - 1; i >= 0; i-- {
		var f fileRecord
		if _, err := s.getJSON(ctx, keys[i], &f); err == nil {
			out = append(out, f)
		}
	}
	return out, nil
}

// latestFile returns the newest version of a file, or errNotFound.
func (s *store) latestFile(ctx context.Context, ws, path string) (fileRecord, error) {
	vs, err := s.fileVersions(ctx, ws, path)
	if err != nil {
		return fileRecord{}, err
	}
	if len(vs) == 0 {
		return fileRecord{}, errNotFound
	}
	return vs[0], nil
}

// fileVersion returns the version that holds content: the latest one when it is equal, else
// the next one, with the write that creates it.
func (s *store) fileVersion(ctx context.Context, ws, path, content string, deleted bool, now time.Time) (int64, *kvWrite, error) {
	latest, err := s.latestFile(ctx, ws, path)
	if err != nil && !errors.Is(err, errNotFound) {
		return 0, nil, err
	}
	if err == nil && latest.Content == content && latest.Deleted == deleted {
		return latest.Version, nil, nil
	}
	v := latest.Version + 1
	w, err := putWrite(fileKey(ws, path, v), fileRecord{Path: path, Version: v, Content: content, Deleted: deleted, CreateTime: now})
	w.Create = true
	return v, &w, err
}

// kvWrite is one write of the catalog's state, kept in a journal until it is done (so it is
// plain data, written again with the same effect).
type kvWrite struct {
	Key   string `json:"key"`
	Value []byte `json:"value,omitempty"`
	// Create writes only a new key (a file version): an existing key holding the same value
	// is a write already done; another value is an error.
	Create bool `json:"create,omitempty"`
	Delete bool `json:"delete,omitempty"`
}

func putWrite(key string, v any) (kvWrite, error) {
	b, err := json.Marshal(v)
	return kvWrite{Key: key, Value: b}, err
}

// write does one write; doing it again has no further effect.
func (s *store) write(ctx context.Context, w kvWrite) error {
	switch {
	case w.Delete:
		return s.delete(ctx, w.Key)
	case w.Create:
		if _, err := s.kv.Create(ctx, w.Key, w.Value); err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return fmt.Errorf("catalog store: create %s: %w", w.Key, err)
			}
			e, gerr := s.kv.Get(ctx, w.Key)
			if gerr != nil {
				return fmt.Errorf("catalog store: get %s: %w", w.Key, gerr)
			}
			if !bytes.Equal(e.Value(), w.Value) {
				return fmt.Errorf("catalog store: %s was written concurrently with another value; push again", w.Key)
			}
		}
		return nil
	default:
		if _, err := s.kv.Put(ctx, w.Key, w.Value); err != nil {
			return fmt.Errorf("catalog store: put %s: %w", w.Key, err)
		}
		return nil
	}
}

// validName reports whether s is a resource or workspace name Sluice accepts: it becomes a
// ClickHouse identifier and a NATS KV key token.
func validName(s string) bool {
	return auth.ValidResourceName(s) && !strings.HasPrefix(s, "__sluice")
}
