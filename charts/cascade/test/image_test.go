package test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image's layout, as the Dockerfile builds it.
const (
	imageBinary  = "/usr/local/bin/cascade"
	imageBusybox = "/usr/local/bin/busybox"
	imageUser    = "65532:65532"
	imageRef     = "ghcr.io/cascade-sfu/cascade:dev"
)

// dockerfile is the repository's Dockerfile, comment lines and continuations folded.
func dockerfile(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	return lines
}

// TestDockerfile: the image the Dockerfile builds fits the chart: static binary, non-root,
// minimal base, the ports the chart uses, busybox where the chart's hooks call it.
func TestDockerfile(t *testing.T) {
	lines := dockerfile(t)
	r := render(t, renderOpts{})
	var froms, exposes []string
	joined := strings.Join(lines, "\n")
	for _, l := range lines {
		switch f := strings.Fields(l); strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, l)
		case "EXPOSE":
			exposes = append(exposes, f[1:]...)
		}
	}
	if len(froms) == 0 || !regexp.MustCompile(`^FROM gcr\.io/distroless/static-debian12:nonroot$`).MatchString(froms[len(froms)-1]) {
		t.Errorf("final stage %q: want distroless static nonroot", froms)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/cascade",
		"USER " + imageUser, `ENTRYPOINT ["` + imageBinary + `"]`, "COPY --from=build /out/cascade " + imageBinary,
		"/bin/busybox " + str(r.value("drain.busybox"))} {
		if !strings.Contains(joined, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if u := intVal(r.value("podSecurityContext.runAsUser")); u != 65532 {
		t.Errorf("chart runs as %d, the image's user is %s", u, imageUser)
	}
	want := []string{
		str(r.value("node.httpPort")) + "/tcp", str(r.value("media.relayPort")) + "/udp", str(r.value("media.udpPort")) + "/udp",
		str(r.value("nats.embedded.clientPort")) + "/tcp", str(r.value("nats.embedded.clusterPort")) + "/tcp", str(r.value("nats.gateway.port")) + "/tcp",
	}
	slices.Sort(want)
	slices.Sort(exposes)
	if !slices.Equal(exposes, want) {
		t.Errorf("EXPOSE %v, the chart's default ports are %v", exposes, want)
	}
}

// TestOCIImage assembles the image from the static binary without a container engine, as an
// OCI image layout: in $CASCADE_OCI_LAYOUT if set (push it with `skopeo copy oci:DIR:dev
// docker://...` or `crane push`), else a temporary directory. busybox (for the chart's hooks)
// goes in when $CASCADE_BUSYBOX names a static one, or /bin/busybox is static.
func TestOCIImage(t *testing.T) {
	bin := cascadeBinary(t)
	checkStatic(t, bin)

	files := []imageFile{
		{name: "etc/", mode: 0o755 | tarDir},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "home/", mode: 0o755 | tarDir},
		{name: "home/nonroot/", mode: 0o700 | tarDir, uid: 65532},
		{name: "tmp/", mode: 0o777 | tarDir | tarSticky},
		{name: "usr/", mode: 0o755 | tarDir},
		{name: "usr/local/", mode: 0o755 | tarDir},
		{name: "usr/local/bin/", mode: 0o755 | tarDir},
		{name: strings.TrimPrefix(imageBinary, "/"), mode: 0o755, path: bin},
	}
	if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		files = append(files, imageFile{name: "etc/ssl/", mode: 0o755 | tarDir}, imageFile{name: "etc/ssl/certs/", mode: 0o755 | tarDir},
			imageFile{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca})
	}
	bb := os.Getenv("CASCADE_BUSYBOX")
	if bb == "" {
		bb = "/bin/busybox"
	}
	if isStatic(bb) {
		files = append(files, imageFile{name: strings.TrimPrefix(imageBusybox, "/"), mode: 0o755, path: bb})
	} else {
		t.Logf("no static busybox (%s): the image has no preStop drain helper; set drain.preStop=false with it, or CASCADE_BUSYBOX", bb)
	}

	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return tarLayer(files) })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch(t, bin)
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = v1.Config{
		User:       imageUser,
		Entrypoint: []string{imageBinary},
		Cmd:        []string{"node"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		WorkingDir: "/home/nonroot",
		ExposedPorts: map[string]struct{}{
			"7880/tcp": {}, "7881/udp": {}, "7882/udp": {}, "4222/tcp": {}, "6222/tcp": {}, "7222/tcp": {},
		},
		Labels: map[string]string{"org.opencontainers.image.source": "https://github.com/cascade-sfu/cascade"},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}

	dir := os.Getenv("CASCADE_OCI_LAYOUT")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "dev"})); err != nil {
		t.Fatal(err)
	}

	// Read it back as a registry client would.
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %v %+v", err, im)
	}
	got, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	gcf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if gcf.Config.User != imageUser || !slices.Equal(gcf.Config.Entrypoint, []string{imageBinary}) || gcf.OS != "linux" {
		t.Errorf("config: user %q entrypoint %q os %s", gcf.Config.User, gcf.Config.Entrypoint, gcf.OS)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want, _ := fileSHA256(bin)
	found := false
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if "/"+h.Name == imageBinary {
			sum := sha256.New()
			_, _ = io.Copy(sum, tr)
			found = hex.EncodeToString(sum.Sum(nil)) == want && h.Mode&0o111 != 0 && h.Uid == 0
		}
	}
	if !found {
		t.Errorf("the layer lacks the executable %s built from ./cmd/cascade", imageBinary)
	}
	d, _ := got.Digest()
	t.Logf("OCI image layout in %s: %s@%s (%s/%s)", dir, imageRef, d, gcf.OS, gcf.Architecture)
}

const (
	tarDir    = 1 << 31
	tarSticky = 1 << 30
)

type imageFile struct {
	name string
	mode int64 // permission bits, with tarDir / tarSticky
	uid  int
	data []byte
	path string // read from this file instead of data
}

// tarLayer writes the files as an uncompressed tar, with fixed times (reproducible).
func tarLayer(files []imageFile) (io.ReadCloser, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode & 0o777, Uid: f.uid, Gid: f.uid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if f.mode&tarSticky != 0 {
			h.Mode |= 0o1000
		}
		data := f.data
		if f.path != "" {
			b, err := os.ReadFile(f.path)
			if err != nil {
				return nil, err
			}
			data = b
		}
		if f.mode&tarDir != 0 {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), nil
}

// checkStatic: no dynamic loader, no shared libraries (the distroless static base has no libc).
func checkStatic(t *testing.T, path string) {
	t.Helper()
	if !isStatic(path) {
		t.Fatalf("%s is not a static executable", path)
	}
}

func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	libs, err := f.ImportedLibraries()
	return err == nil && len(libs) == 0
}

func goarch(t *testing.T, path string) string {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	}
	t.Fatalf("architecture %v", f.Machine)
	return ""
}

func fileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}
