package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	modversion "golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/zip"
	"gopkg.in/yaml.v3"
)

// A release is the tag vX.Y.Z of CHANGELOG.md's newest version
// (docs/releasing.md). These tests keep what the repository says about it
// in step, and build what the tag would publish from a clone of HEAD tagged
// with that version: the archives of scripts/release.sh, and the Go module
// that `go install …/chatload@vX.Y.Z` fetches.

const modulePath = "github.com/switchboard-dev/switchboard"

var changelogHeading = regexp.MustCompile(`(?m)^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?\s*$`)

// releaseVersion is the newest version CHANGELOG.md releases, as a tag
// ("v0.1.0"). Keep a Changelog 1.1.0 (https://keepachangelog.com/en/1.1.0/):
// an [Unreleased] section on top, then the releases newest first, each
// "## [X.Y.Z] - YYYY-MM-DD" with a link reference at the bottom.
func releaseVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	headings := changelogHeading.FindAllStringSubmatch(text, -1)
	if len(headings) < 2 || headings[0][1] != "Unreleased" {
		t.Fatalf("CHANGELOG.md: want [Unreleased] and then at least one release, have %d sections", len(headings))
	}
	prev := ""
	for _, h := range headings[1:] {
		v := "v" + h[1]
		if !semver.IsValid(v) || semver.Canonical(v) != v {
			t.Errorf("CHANGELOG.md: section [%s]: want a version MAJOR.MINOR.PATCH", h[1])
		}
		if _, err := time.Parse(time.DateOnly, h[2]); err != nil {
			t.Errorf("CHANGELOG.md: section [%s]: want a release date YYYY-MM-DD after it", h[1])
		}
		if prev != "" && semver.Compare(v, prev) >= 0 {
			t.Errorf("CHANGELOG.md: [%s] comes after [%s]: want the newest first", h[1], prev[1:])
		}
		if !strings.Contains(text, "\n["+h[1]+"]: https://") {
			t.Errorf("CHANGELOG.md: no link reference [%s]: https://…", h[1])
		}
		prev = v
	}
	return "v" + headings[1][1]
}

// versionMentions are the ways the docs name a release of this project: the
// image tag, the module version, the plugin archive, the plugin install
// command, the release's URL, the tag command.
var versionMentions = regexp.MustCompile(`chatserver:(v\d+\.\d+\.\d+)|switchboard(?:/[\w/]+)?@(v\d+\.\d+\.\d+)|pulumi-resource-switchboard-(v\d+\.\d+\.\d+)|resource switchboard (v\d+\.\d+\.\d+)|switchboard/releases/(?:tag|download)/(v\d+\.\d+\.\d+)|git tag -a (v\d+\.\d+\.\d+)`)

// A release cannot ship pinning or documenting another one: the stack files
// pin the newest CHANGELOG version's image, and every doc that names a
// version of the project names that one.
func TestReleaseVersionIsPinnedEverywhere(t *testing.T) {
	version := releaseVersion(t)
	t.Logf("CHANGELOG.md's newest release: %s", version)

	for _, stack := range []string{"prod", "staging"} {
		b, err := os.ReadFile("../Pulumi." + stack + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		var f struct{ Config map[string]any }
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("Pulumi.%s.yaml: %v", stack, err)
		}
		image, _ := f.Config["switchboard:image"].(string)
		if want := "ghcr.io/switchboard-dev/chatserver:" + version; image != want && !strings.HasPrefix(image, want+"@sha256:") {
			t.Errorf("Pulumi.%s.yaml: switchboard:image %q, want the release's image %s (or it pinned by digest)", stack, image, want)
		}
	}

	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, p := range append(docs, "../README.md", "../SECURITY.md", "../CONTRIBUTING.md", "../Pulumi.prod.yaml", "../Pulumi.staging.yaml") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range versionMentions.FindAllStringSubmatch(string(b), -1) {
			named++
			if v := strings.Join(m[1:], ""); v != version { // one group matched
				t.Errorf("%s names %q: want the release %s", p, m[0], version)
			}
		}
	}
	if named == 0 {
		t.Error("no doc names the release: docs/releasing.md should show how to pin it")
	}

	// SECURITY.md's supported versions: the release's minor series.
	b, err := os.ReadFile("../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	if series := "`" + strings.TrimPrefix(semver.MajorMinor(version), "v") + ".x`"; !strings.Contains(string(b), "| "+series+" | yes |") {
		t.Errorf("SECURITY.md: want the row | %s | yes | among the supported versions", series)
	}
}

// taggedClone is a clone of the checkout's HEAD with the annotated tag
// version on it: what the release workflow checks out. Uncommitted changes
// are not in it.
func taggedClone(t *testing.T, version string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "switchboard")
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// --no-tags: the repository may have the release's tag already, on
	// another commit; this clone tags the HEAD under test.
	git("clone", "-q", "--no-tags", "..", dir)
	git("-C", dir, "-c", "user.name=release test", "-c", "user.email=release@test", "tag", "-a", version, "-m", version)
	t.Logf("a clone of HEAD %s, tagged %s", git("-C", dir, "rev-parse", "--short", "HEAD"), version)
	return dir
}

// scripts/release.sh builds each command for its platforms into archives
// that hold the binary at their root (the layout `pulumi plugin install`
// unpacks for a provider, and the one anyone extracts by hand), stamped with
// the release's version, and checksums that verify; it refuses to package a
// build whose version is not the one asked for.
func TestReleaseArchives(t *testing.T) {
	version := releaseVersion(t)
	clone := taggedClone(t, version)
	script := filepath.Join(clone, "scripts", "release.sh")

	t.Run("another version is refused", func(t *testing.T) {
		out, err := exec.Command(script, "v99.0.0", t.TempDir(), "app/cmd/chatload:"+runtime.GOOS+"/"+runtime.GOARCH).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not v99.0.0") {
			t.Errorf("release.sh v99.0.0 at the tag %s: %v, want a refusal naming the version\n%s", version, err, out)
		}
	})

	dist := t.TempDir()
	platforms := []string{"linux/amd64", "linux/arm64"}
	start := time.Now()
	if out, err := exec.Command(script, version, dist, "app/cmd/chatload:"+strings.Join(platforms, ",")).CombinedOutput(); err != nil {
		t.Fatalf("release.sh %s: %v\n%s", version, err, out)
	}
	t.Logf("release.sh %s, chatload for %v: %s", version, platforms, time.Since(start).Round(time.Second))

	var want []string
	for _, p := range platforms {
		want = append(want, "chatload-"+version+"-"+strings.ReplaceAll(p, "/", "-")+".tar.gz")
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
	}
	if !slices.Equal(have, slices.Sorted(slices.Values(append(slices.Clone(want), "SHA256SUMS")))) {
		t.Fatalf("release.sh wrote %v, want %v and SHA256SUMS", have, want)
	}
	sums := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	sums.Dir = dist
	if out, err := sums.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != len(want) {
		t.Errorf("sha256sum --check SHA256SUMS: %v\n%s", err, out)
	}

	for i, name := range want {
		goos, goarch, _ := strings.Cut(platforms[i], "/")
		files := untar(t, filepath.Join(dist, name))
		if names := slices.Sorted(maps.Keys(files)); !slices.Equal(names, []string{"LICENSE", "chatload"}) {
			t.Errorf("%s holds %v, want chatload and LICENSE at its root", name, names)
			continue
		}
		bin := files["chatload"]
		if bin.mode&0o111 == 0 {
			t.Errorf("%s: chatload has mode %v, want executable", name, bin.mode)
		}
		info, err := buildinfo.Read(bytes.NewReader(bin.data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if info.Path != modulePath+"/app/cmd/chatload" || info.Main.Version != version ||
			settings["GOOS"] != goos || settings["GOARCH"] != goarch || settings["CGO_ENABLED"] != "0" || settings["vcs.modified"] != "false" {
			t.Errorf("%s: %s %s, GOOS=%s GOARCH=%s CGO_ENABLED=%s vcs.modified=%s; want %s/app/cmd/chatload %s for %s, static, from a clean checkout",
				name, info.Path, info.Main.Version, settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"], settings["vcs.modified"], modulePath, version, platforms[i])
		}
		t.Logf("%s: %d bytes, chatload %s %s/%s", name, fileSize(t, filepath.Join(dist, name)), info.Main.Version, goos, goarch)
	}
}

type tarFile struct {
	mode os.FileMode
	data []byte
}

// untar reads a .tar.gz into its regular files by name, and fails on any
// entry in a folder or of another type.
func untar(t *testing.T, path string) map[string]tarFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	files := map[string]tarFile{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg || strings.Contains(h.Name, "/") {
			t.Errorf("%s: entry %s (type %c): want regular files at the root only", path, h.Name, h.Typeflag)
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		files[h.Name] = tarFile{h.FileInfo().Mode(), data}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// `go install github.com/switchboard-dev/switchboard/app/cmd/chatload@vX.Y.Z`,
// as a team runs it once the tag is public, from an empty module cache. The
// module comes from a file:// proxy holding the zip the public proxy would
// serve for the tag (built from the tagged clone as the go command builds
// one from a repository, golang.org/x/mod/zip), its dependencies from this
// machine's module download cache, so no module is downloaded. The
// dependencies' checksums are verified against the checksum database, as a
// team's go command does, through the one proxy that serves it
// (proxy.golang.org, last in GOPROXY); it does not know an unpublished
// version, so the module alone is exempt (GONOSUMDB).
func TestGoInstallChatloadAtRelease(t *testing.T) {
	version := releaseVersion(t)
	clone := taggedClone(t, version)

	proxy := t.TempDir()
	at := filepath.Join(proxy, modulePath, "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	zf, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := zip.CreateFromVCS(zf, modversion.Version{Path: modulePath, Version: version}, clone, version, ""); err != nil {
		t.Fatalf("module zip of %s at %s: %v", modulePath, version, err)
	}
	if err := zf.Close(); err != nil {
		t.Fatal(err)
	}
	goMod, err := exec.Command("git", "-C", clone, "show", version+":go.mod").Output()
	if err != nil {
		t.Fatalf("git show %s:go.mod: %v", version, err)
	}
	committed, err := exec.Command("git", "-C", clone, "log", "-1", "--format=%ct", version).Output()
	if err != nil {
		t.Fatal(err)
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(committed)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Unix(secs, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{version + ".mod": goMod, version + ".info": info, "list": []byte(version + "\n")} {
		if err := os.WriteFile(filepath.Join(at, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	downloads, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	modcache, gobin := t.TempDir(), t.TempDir()
	env := append(os.Environ(),
		"GOFLAGS=", // not the Makefile's -mod=mod: go install m@v takes no -mod
		"GOWORK=off",
		"GOTOOLCHAIN=local",
		"GOMODCACHE="+modcache,
		"GOBIN="+gobin,
		"GOPROXY=file://"+proxy+",file://"+filepath.Join(strings.TrimSpace(string(downloads)), "cache", "download")+",https://proxy.golang.org",
		"GOSUMDB=sum.golang.org",
		"GONOSUMDB="+modulePath,
		"GOPRIVATE=", "GONOPROXY=",
	)
	// The module cache is read-only: only the go command removes it.
	t.Cleanup(func() {
		clean := exec.Command("go", "clean", "-modcache")
		clean.Env = env
		if out, err := clean.CombinedOutput(); err != nil {
			t.Errorf("go clean -modcache: %v\n%s", err, out)
		}
	})

	pkg := modulePath + "/app/cmd/chatload@" + version
	install := exec.Command("go", "install", pkg)
	install.Env = env
	install.Dir = t.TempDir() // outside any module
	start := time.Now()
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", pkg, err, out)
	}
	took := time.Since(start)

	out, err := exec.Command(filepath.Join(gobin, "chatload"), "-version").CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), "chatload "+version; err != nil || got != want {
		t.Errorf("chatload -version: %q (%v), want %q", got, err, want)
	}
	t.Logf("go install %s from an empty module cache: %s (module zip %d bytes); chatload -version: %s",
		pkg, took.Round(100*time.Millisecond), fileSize(t, zf.Name()), strings.TrimSpace(string(out)))
}
