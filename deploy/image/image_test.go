package image_test

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sluicehq/sluice/deploy/image"
)

const testVersion = "0.0.0-imagetest"

// repoRoot is the directory holding go.work.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found above the test")
		}
		dir = parent
	}
}

// buildSluiced builds sluiced as make image does (static with cgo off, or with cgo).
func buildSluiced(t *testing.T, dir string, cgo bool) string {
	t.Helper()
	out := filepath.Join(dir, "sluiced")
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/sluicehq/sluice/cmd/sluiced/app.Version="+testVersion+" -X github.com/sluicehq/sluice/cmd/sluiced/app.Commit=test", "-o", out, "./cmd/sluiced")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+map[bool]string{true: "1", false: "0"}[cgo])
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// chdbLib is the libchdb.so that make chdb fetched.
func chdbLib(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SLUICE_CHDB_LIB")
	if p == "" {
		cache, _ := os.UserCacheDir()
		matches, _ := filepath.Glob(filepath.Join(cache, "sluice", "chdb", "*", "package", "libchdb.so"))
		if len(matches) > 0 {
			p = matches[len(matches)-1]
		}
	}
	if _, err := os.Stat(p); p == "" || err != nil {
		t.Fatalf("libchdb.so not found (SLUICE_CHDB_LIB=%q): run `make chdb`", p)
	}
	return p
}

// TestStaticImage builds the split-mode image and checks it as a container runtime would see
// it: the tarball names the image, its config names sluiced as the entrypoint and an
// unprivileged user, the OCI layout in it holds the same image, and sluiced from the
// extracted file system runs (-version).
func TestStaticImage(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "sluiced.tar")
	ref := "ghcr.io/sluicehq/sluiced:" + testVersion
	if err := image.Build(image.Options{Binary: buildSluiced(t, dir, false), Ref: ref, Version: testVersion, Revision: "test", Created: time.Unix(1700000000, 0), Out: out}); err != nil {
		t.Fatal(err)
	}
	img := checkArchive(t, out, ref)
	root := extract(t, img, filepath.Join(dir, "rootfs"))
	got := run(t, exec.Command(filepath.Join(root, image.BinaryPath), "-version"))
	if !strings.HasPrefix(got, "sluiced "+testVersion+" (commit test") {
		t.Errorf("sluiced -version printed %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, image.ChDBLibPath)); err == nil {
		t.Error("the static image carries libchdb.so")
	}
}

// TestAllInOneImage builds the image with embedded ClickHouse and runs it from the extracted
// file system only: -version, every library libchdb.so needs found inside the image, and (as
// root, in a chroot with its own mounts) the all-in-one process serving with embedded NATS and
// chDB as the image's user.
func TestAllInOneImage(t *testing.T) {
	if testing.Short() {
		t.Skip("copies the 0.5 GB chDB library")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "sluiced-chdb.tar")
	ref := "ghcr.io/sluicehq/sluiced:" + testVersion + "-chdb"
	if err := image.Build(image.Options{Binary: buildSluiced(t, dir, true), ChDBLib: chdbLib(t), Ref: ref, Version: testVersion, Created: time.Unix(1700000000, 0), Out: out}); err != nil {
		t.Fatal(err)
	}
	img := checkArchive(t, out, ref)
	cfg, _ := img.ConfigFile()
	if !slices.Contains(cfg.Config.Cmd, "-clickhouse-embedded-lib="+image.ChDBLibPath) {
		t.Errorf("the default command %v does not point at the image's libchdb.so", cfg.Config.Cmd)
	}
	root := extract(t, img, filepath.Join(dir, "rootfs"))
	if os.Geteuid() != 0 {
		// Without root there is no chroot: run the binary through the image's own loader and
		// libraries, so nothing of this machine's C library is used.
		t.Log("not root: running through the image's dynamic loader instead of a chroot")
		loader := filepath.Join(root, "lib64", "ld-linux-x86-64.so.2")
		libs := filepath.Join(root, "lib", "x86_64-linux-gnu")
		got := run(t, exec.Command(loader, "--library-path", libs, filepath.Join(root, image.BinaryPath), "-version"))
		if !strings.HasPrefix(got, "sluiced "+testVersion) {
			t.Errorf("sluiced -version printed %q", got)
		}
		return
	}
	got := run(t, exec.Command("chroot", "--userspec=65532:65532", root, image.BinaryPath, "-version"))
	if !strings.HasPrefix(got, "sluiced "+testVersion) {
		t.Errorf("sluiced -version printed %q", got)
	}
	deps := run(t, exec.Command("chroot", root, "/lib64/ld-linux-x86-64.so.2", "--list", image.ChDBLibPath))
	if strings.Contains(deps, "not found") || !strings.Contains(deps, "libc.so.6") {
		t.Errorf("libchdb.so's libraries inside the image:\n%s", deps)
	}
	serveAllInOne(t, root)
}

// serveAllInOne runs the image's default command in a chroot of the extracted image, with
// /proc, /dev and /sys mounted in a private mount namespace (as a container runtime provides them),
// waits until every service is SERVING, then stops it with SIGTERM.
func serveAllInOne(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	script := `mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && mount --rbind /sys "$1/sys" && exec chroot --userspec=65532:65532 "$1" "$2" "$3" -target=all -data-dir=/var/lib/sluice -clickhouse-embedded-lib="$4" -grpc-addr="$5" -http-addr=`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", root, image.BinaryPath, "-log-format=text", image.ChDBLibPath, addr)
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("sluiced in the image:\n%s", logs.String())
		}
	}()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("sluiced exited before serving: %v", exitErr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "sluice.catalog.v1.CatalogService"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the catalog of the image's all-in-one process was not SERVING within 90s (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if exitErr != nil {
			t.Errorf("sluiced did not stop cleanly on SIGTERM: %v", exitErr)
		}
	case <-time.After(60 * time.Second):
		t.Error("sluiced did not stop within 60s of SIGTERM")
	}
}

// checkArchive opens the tarball both ways a runtime reads it — docker-save's manifest.json
// and the OCI image layout — and checks they hold the same image under ref, with sluiced as
// its entrypoint.
func checkArchive(t *testing.T, out, ref string) v1.Image {
	t.Helper()
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatalf("read %s as a docker-save archive: %v", out, err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{ref}) {
		t.Errorf("manifest.json names %+v, want one image tagged %s", m, ref)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{image.BinaryPath}) {
		t.Errorf("entrypoint %v, want [%s]", cfg.Config.Entrypoint, image.BinaryPath)
	}
	if cfg.Config.User != "65532:65532" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("user %q, platform %s/%s", cfg.Config.User, cfg.OS, cfg.Architecture)
	}
	if _, ok := cfg.Config.ExposedPorts["7181/tcp"]; !ok {
		t.Errorf("gRPC port not exposed: %v", cfg.Config.ExposedPorts)
	}
	// The same tarball as an OCI image layout.
	ldir := filepath.Join(t.TempDir(), "layout")
	untar(t, out, ldir)
	idx, err := layout.ImageIndexFromPath(ldir)
	if err != nil {
		t.Fatalf("read %s as an OCI image layout: %v", out, err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index.json: %v %+v", err, im)
	}
	if got := im.Manifests[0].Annotations["io.containerd.image.name"]; got != ref {
		t.Errorf("index.json names %q, want %s", got, ref)
	}
	oci, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	// Both sides name the same config and layers (the docker-save side has no manifest of its
	// own to compare: readers make one up).
	if a, b := configName(t, oci), configName(t, img); a != b {
		t.Errorf("the OCI layout's config is %s, manifest.json's %s", a, b)
	}
	if a, b := layerDigests(t, oci), layerDigests(t, img); !slices.Equal(a, b) {
		t.Errorf("the OCI layout's layers are %v, manifest.json's %v", a, b)
	}
	if mt, _ := oci.MediaType(); !strings.Contains(string(mt), "oci") {
		t.Errorf("manifest media type %s is not OCI", mt)
	}
	return img
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	if len(out) == 0 {
		t.Fatal("the image has no layers")
	}
	return out
}

// extract writes the image's flattened file system under dir, with its owners when root.
func extract(t *testing.T, img v1.Image, dir string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := untarStream(rc, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := untarStream(f, dir); err != nil {
		t.Fatal(err)
	}
}

func untarStream(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(os.PathSeparator)) {
			return fmt.Errorf("%s leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm|modeBits(h.Mode)); err != nil {
				return err
			}
			_ = os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|modeBits(h.Mode))
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&os.ModePerm)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				_ = f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		default:
			continue
		}
		if os.Geteuid() == 0 {
			_ = os.Lchown(p, h.Uid, h.Gid)
		}
	}
}

// modeBits keeps the sticky bit of /tmp.
func modeBits(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
