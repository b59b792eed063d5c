package tests

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// dockerfile is the parts of ../Dockerfile the checks need.
type dockerfile struct {
	stages      []string            // AS names, in order
	copies      map[string][]string // stage → sources of its COPY lines
	copiesFrom  []string            // stages named by COPY --from
	build       string              // the RUN line with go build
	user        string
	stopSignal  string
	expose      []string
	healthcheck []string // the exec form of HEALTHCHECK CMD
	binary      string   // where the runtime stage puts the binary
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{copies: map[string][]string{}}
	stage := ""
	execForm := regexp.MustCompile(`"([^"]*)"`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch args := fields[1:]; strings.ToUpper(fields[0]) {
		case "FROM":
			for len(args) > 0 && strings.HasPrefix(args[0], "--") { // --platform=…
				args = args[1:]
			}
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				stage = args[2]
				d.stages = append(d.stages, stage)
			}
		case "COPY":
			if strings.HasPrefix(args[0], "--from=") {
				d.copiesFrom = append(d.copiesFrom, strings.TrimPrefix(args[0], "--from="))
				d.binary = args[len(args)-1]
				continue
			}
			d.copies[stage] = append(d.copies[stage], args[:len(args)-1]...)
		case "RUN":
			if strings.Contains(sc.Text(), "go build") {
				d.build = strings.Join(args, " ")
			}
		case "USER":
			d.user = args[0]
		case "STOPSIGNAL":
			d.stopSignal = args[0]
		case "EXPOSE":
			d.expose = args
		case "HEALTHCHECK":
			for _, m := range execForm.FindAllStringSubmatch(sc.Text()[strings.Index(sc.Text(), "CMD"):], -1) {
				d.healthcheck = append(d.healthcheck, m[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// No Docker engine here: the Dockerfile is checked against the repository,
// its build command is run exactly as written, and the image's health check
// is run against an instance of the target.
func dockerfileBuildsWhatItShips(t *testing.T, s *suite) {
	d := parseDockerfile(t, "../Dockerfile")
	for _, from := range d.copiesFrom {
		if !slices.Contains(d.stages, from) {
			t.Errorf("COPY --from=%s: no such stage among %v", from, d.stages)
		}
	}
	for stage, srcs := range d.copies {
		for _, src := range srcs {
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("stage %s copies %s, which the repository lacks", stage, src)
			}
		}
	}
	if d.user == "" || d.user == "root" || strings.HasPrefix(d.user, "0") {
		t.Errorf("USER %q: want a non-root user", d.user)
	}
	if d.stopSignal != "SIGTERM" {
		t.Errorf("STOPSIGNAL %q, want SIGTERM", d.stopSignal)
	}
	if len(d.expose) == 0 {
		t.Error("no EXPOSE")
	}
	if len(d.healthcheck) < 2 || d.healthcheck[0] != d.binary {
		t.Fatalf("HEALTHCHECK %v: want the exec form running the shipped binary %s", d.healthcheck, d.binary)
	}

	// Run the build line from the repository root, writing where the test says.
	out := filepath.Join(t.TempDir(), "chatserver")
	build := regexp.MustCompile(`-o \S+`).ReplaceAllString(d.build, "-o "+out)
	cmd := exec.Command("sh", "-c", build)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	bin, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary needs a dynamic loader; the runtime image has none")
		}
	}

	// The health check the image runs, against a live instance and a dead port.
	in := s.instances(t)[0]
	for _, c := range []struct {
		addr string
		ok   bool
	}{{strings.TrimPrefix(in.URL, "http://"), true}, {"127.0.0.1:1", false}} {
		hc := exec.Command(out, d.healthcheck[1:]...)
		hc.Env = append(os.Environ(), "LISTEN_ADDR="+c.addr)
		if err := hc.Run(); (err == nil) != c.ok {
			t.Errorf("healthcheck on %s: %v, want success %v", c.addr, err, c.ok)
		}
	}
	report.Logf(t, "Dockerfile: stages %v, %q builds a static binary, USER %s, STOPSIGNAL %s, EXPOSE %v, HEALTHCHECK %v passes on %s and fails on a dead port",
		d.stages, d.build, d.user, d.stopSignal, d.expose, d.healthcheck, in.ID)
}

// The release workflow builds the image for every platform its
// build-push-action step lists; BuildKit runs the Dockerfile's build stage
// with TARGETOS and TARGETARCH set to each. The build line, run as written
// with those values, gives a static binary for each platform's machine.
func TestDockerfileBuildsForEveryReleasePlatform(t *testing.T) {
	d := parseDockerfile(t, "../Dockerfile")
	if !strings.Contains(d.build, "GOARCH=$TARGETARCH") || !strings.Contains(d.build, "GOOS=$TARGETOS") {
		t.Fatalf("build line %q: want GOOS=$TARGETOS GOARCH=$TARGETARCH, so that each platform gets its own binary", d.build)
	}
	platforms := releasePlatforms(t)
	if !slices.Contains(platforms, "linux/amd64") || !slices.Contains(platforms, "linux/arm64") {
		t.Errorf("release platforms %v: want linux/amd64 and linux/arm64 (Graviton nodes)", platforms)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, p := range platforms {
		t.Run(p, func(t *testing.T) {
			goos, goarch, _ := strings.Cut(p, "/")
			out := filepath.Join(t.TempDir(), "chatserver")
			build := regexp.MustCompile(`-o \S+`).ReplaceAllString(d.build, "-o "+out)
			cmd := exec.Command("sh", "-c", build)
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "TARGETOS="+goos, "TARGETARCH="+goarch)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s with TARGETOS=%s TARGETARCH=%s: %v\n%s", build, goos, goarch, err, b)
			}
			bin, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer bin.Close()
			if want, ok := machines[goarch]; !ok || bin.Machine != want {
				t.Errorf("%s: binary for %v, want %v", p, bin.Machine, want)
			}
			for _, prog := range bin.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Errorf("%s: the binary needs a dynamic loader; the runtime image has none", p)
				}
			}
		})
	}
}

// releasePlatforms are the platforms of the workflows' build-push-action steps.
func releasePlatforms(t *testing.T) []string {
	files, err := filepath.Glob("../.github/workflows/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no workflow in .github/workflows (%v)", err)
	}
	var platforms []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			Jobs map[string]struct {
				Steps []struct {
					Uses string
					With map[string]string
				}
			}
		}
		if err := yaml.Unmarshal(b, &wf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, job := range wf.Jobs {
			for _, s := range job.Steps {
				if strings.HasPrefix(s.Uses, "docker/build-push-action@") {
					for _, p := range strings.Split(s.With["platforms"], ",") {
						platforms = append(platforms, strings.TrimSpace(p))
					}
				}
			}
		}
	}
	if len(platforms) == 0 {
		t.Fatalf("no docker/build-push-action step with platforms in %v", files)
	}
	return platforms
}
