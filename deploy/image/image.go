// Package image builds the OCI images of sluiced without a container engine: a root file
// system assembled from files (the binary, and for the embedded flavour libchdb.so with the C
// libraries it and the binary need, taken from the build machine), written as one tarball that
// is both an OCI image layout (oci-layout, index.json, blobs/) and a `docker save` archive
// (manifest.json), so that `docker load`, `podman load`, `skopeo copy oci-archive:...` and
// `crane push` all take it.
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths inside the image.
const (
	BinaryPath  = "/usr/bin/sluiced"
	ChDBLibPath = "/usr/lib/sluice/libchdb.so"
	DataDir     = "/var/lib/sluice"
	// UID and GID of the user sluiced runs as (no login, no home).
	UID = 65532
)

// Options describe one image.
type Options struct {
	// Binary is the sluiced to put in the image: static (CGO_ENABLED=0) for the split-mode
	// image; built with cgo for the embedded flavour, which dlopens libchdb.so.
	Binary string
	// ChDBLib is libchdb.so for the embedded (all-in-one) flavour; empty for the static image.
	ChDBLib string
	// Ref names the image, for example ghcr.io/sluicehq/sluiced:0.1.0.
	Ref string
	// Version and Revision are recorded in the image's labels.
	Version, Revision string
	// Created is the image's creation time (a commit time keeps builds reproducible).
	Created time.Time
	// Out is the tarball to write.
	Out string
}

// Build writes the image described by o to o.Out.
func Build(o Options) error {
	ref, err := name.NewTag(o.Ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", o.Ref, err)
	}
	work, err := os.MkdirTemp(filepath.Dir(o.Out), ".image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	base, err := baseFiles()
	if err != nil {
		return err
	}
	layerSpecs := []layerSpec{{name: "base", files: base}}
	if o.ChDBLib != "" {
		libs, err := sharedLibraries(o.Binary, o.ChDBLib)
		if err != nil {
			return err
		}
		layerSpecs = append(layerSpecs,
			layerSpec{name: "libc", files: libs},
			// The 0.5 GB library in its own layer: it changes only with the chDB version.
			layerSpec{name: "chdb", files: []file{{path: ChDBLibPath, src: o.ChDBLib, mode: 0o755}}, fast: true})
	}
	layerSpecs = append(layerSpecs, layerSpec{name: "sluiced", files: []file{{path: BinaryPath, src: o.Binary, mode: 0o755}}})

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, ls := range layerSpecs {
		p := filepath.Join(work, ls.name+".tar.gz")
		if err := writeLayer(p, ls); err != nil {
			return fmt.Errorf("layer %s: %w", ls.name, err)
		}
		layer, err := tarball.LayerFromFile(p, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("layer %s: %w", ls.name, err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: o.Created.UTC()}
	cfg.Config = configOf(o)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	img = mutate.Annotations(img, map[string]string{
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
	}).(v1.Image)
	return writeArchive(o.Out, work, ref, img)
}

// configOf is the runtime configuration: sluiced as the entrypoint, as an unprivileged user,
// with its data directory. The embedded flavour runs everything in one process by default.
func configOf(o Options) v1.Config {
	c := v1.Config{
		Entrypoint:   []string{BinaryPath},
		User:         fmt.Sprintf("%d:%d", UID, UID),
		WorkingDir:   DataDir,
		Env:          []string{"PATH=/usr/bin:/bin"},
		ExposedPorts: map[string]struct{}{"7181/tcp": {}, "7182/tcp": {}},
		Volumes:      map[string]struct{}{DataDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "sluiced",
			"org.opencontainers.image.source":   "https://github.com/sluicehq/sluice",
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Revision,
		},
		StopSignal: "SIGTERM",
	}
	if o.ChDBLib != "" {
		c.Cmd = []string{"-target=all", "-data-dir=" + DataDir, "-clickhouse-embedded-lib=" + ChDBLibPath, "-grpc-addr=:7181", "-http-addr=:7182"}
	} else {
		c.Cmd = []string{"-help"}
	}
	return c
}

// file is one entry of a layer: a regular file copied from src, a directory (src and link
// empty), or a symbolic link.
type file struct {
	path, src, link string
	data            []byte
	mode            int64
	uid             int
	dir             bool
}

type layerSpec struct {
	name  string
	files []file
	// fast trades size for time (the chDB library compresses little anyway).
	fast bool
}

// baseFiles are the files every image has: the user sluiced runs as, the CA certificates of the
// build machine (for TLS to ClickHouse and NATS), a world-writable /tmp and the data directory.
func baseFiles() ([]file, error) {
	certs, err := firstExisting("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w (on Debian: apt-get install -y ca-certificates)", err)
	}
	return []file{
		{path: "/etc", dir: true, mode: 0o755},
		{path: "/etc/passwd", data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nsluice:x:%d:%d:sluice:%s:/sbin/nologin\n", UID, UID, DataDir), mode: 0o644},
		{path: "/etc/group", data: fmt.Appendf(nil, "root:x:0:\nsluice:x:%d:\n", UID), mode: 0o644},
		{path: "/etc/nsswitch.conf", data: []byte("hosts: files dns\n"), mode: 0o644},
		{path: "/etc/ssl", dir: true, mode: 0o755},
		{path: "/etc/ssl/certs", dir: true, mode: 0o755},
		{path: "/etc/ssl/certs/ca-certificates.crt", src: certs, mode: 0o644},
		{path: "/tmp", dir: true, mode: 0o1777},
		{path: "/usr", dir: true, mode: 0o755},
		{path: "/usr/bin", dir: true, mode: 0o755},
		{path: "/usr/lib", dir: true, mode: 0o755},
		{path: "/usr/lib/sluice", dir: true, mode: 0o755},
		{path: "/var", dir: true, mode: 0o755},
		{path: "/var/lib", dir: true, mode: 0o755},
		{path: DataDir, dir: true, mode: 0o750, uid: UID},
	}, nil
}

func firstExisting(paths ...string) (string, error) {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %s exists", strings.Join(paths, ", "))
}

var lddLine = regexp.MustCompile(`^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$`)

// sharedLibraries are the C libraries (and the dynamic loader) that the binaries load, as ldd
// of the build machine resolves them: each real file at its path, with the symbolic links
// that lead to it.
func sharedLibraries(binaries ...string) ([]file, error) {
	seen := map[string]bool{}
	var out []file
	addDirs := func(p string) {
		for d := path.Dir(p); d != "/" && !seen[d]; d = path.Dir(d) {
			seen[d] = true
			out = append(out, file{path: d, dir: true, mode: 0o755})
		}
	}
	for _, b := range binaries {
		res, err := exec.Command("ldd", b).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w: %s", b, err, res)
		}
		sc := bufio.NewScanner(bytes.NewReader(res))
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "not found") {
				return nil, fmt.Errorf("ldd %s: %s", b, strings.TrimSpace(line))
			}
			m := lddLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			// Follow the links one by one, keeping each (ld-linux lives in /lib64 as a link).
			for p := m[1]; !seen[p]; {
				seen[p] = true
				fi, err := os.Lstat(p)
				if err != nil {
					return nil, err
				}
				addDirs(p)
				if fi.Mode()&fs.ModeSymlink == 0 {
					out = append(out, file{path: p, src: p, mode: 0o755})
					break
				}
				target, err := os.Readlink(p)
				if err != nil {
					return nil, err
				}
				out = append(out, file{path: p, link: target})
				if !path.IsAbs(target) {
					target = path.Join(path.Dir(p), target)
				}
				p = target
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// writeLayer writes the files as a gzip-compressed tar with fixed times and owners, so that a
// layer's digest depends on its content only.
func writeLayer(p string, ls layerSpec) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	level := gzip.DefaultCompression
	if ls.fast {
		level = gzip.BestSpeed
	}
	zw, err := gzip.NewWriterLevel(f, level)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0)
	for _, fl := range ls.files {
		h := &tar.Header{Name: strings.TrimPrefix(fl.path, "/"), Mode: fl.mode, Uid: fl.uid, Gid: fl.uid, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case fl.dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		case fl.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, fl.link, 0o777
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		case fl.data != nil:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(fl.data))
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(fl.data); err != nil {
				return err
			}
		default:
			if err := copyInto(tw, h, fl.src); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func copyInto(tw *tar.Writer, h *tar.Header, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	h.Typeflag, h.Size = tar.TypeReg, fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, in)
	return err
}

// writeArchive writes the image as an OCI image layout with a docker-save manifest.json
// beside it, tarred into out.
func writeArchive(out, work string, ref name.Tag, img v1.Image) error {
	dir := filepath.Join(work, "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.TagStr(),
		"io.containerd.image.name":          ref.Name(),
	})); err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	entry := struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{Config: blobPath(cfgName), RepoTags: []string{ref.Name()}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		entry.Layers = append(entry.Layers, blobPath(d))
	}
	manifest, err := json.Marshal([]any{entry})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), manifest, 0o644); err != nil {
		return err
	}
	return tarDir(out, dir)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDir writes the files under dir into the tar out, sorted, with fixed times.
func tarDir(out, dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp) }()
	tw := tar.NewWriter(f)
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if fi.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		if err := copyInto(tw, h, p); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
