// Package local starts the processes of Switchboard's local target — Redis,
// PostgreSQL, chat servers, NGINX, Prometheus, Alertmanager — on this machine. `make up` and
// the tests use the same launcher.
package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one started program whose output goes to a log file.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	mu      sync.Mutex
}

// spawn starts bin with args and env (added to the current environment);
// stdout and stderr go to dir/name.log. as, if set, names the user to run as.
func spawn(name, dir, as string, env []string, bin string, args ...string) (*Process, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, missing(bin)
	}
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a signal to the launcher's group (Ctrl-C) does not
	// reach the children, which are stopped in order instead; Pdeathsig
	// takes them down if the launcher dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if as != "" {
		cred, err := credential(as)
		if err != nil {
			logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		cmd.SysProcAttr.Credential = cred
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	remember(dir, p.Pid(), filepath.Base(path))
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.done }

// ExitCode is the exit status once Exited is closed (-1 if killed by a signal).
func (p *Process) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s to %s: %w", sig, p.Name, err)
	}
	return nil
}

// Wait waits for the process to end, up to timeout.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.Pid(), timeout)
	}
}

// Stop sends SIGTERM, waits up to grace, then kills. It is safe to call twice.
func (p *Process) Stop(grace time.Duration) error { return p.stopWith(syscall.SIGTERM, grace) }

func (p *Process) stopWith(sig syscall.Signal, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.Signal(sig); err != nil {
		return err
	}
	if p.Wait(grace) == nil {
		return nil
	}
	p.Kill()
	return fmt.Errorf("%s did not stop within %s after %s; killed", p.Name, grace, sig)
}

// Kill sends SIGKILL to the process and everything it started (its process
// group: NGINX's workers, PostgreSQL's backends, which would otherwise live
// on without it) and waits for the process to be gone.
func (p *Process) Kill() {
	if syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) != nil {
		_ = p.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// MissingError names a program that is not installed and how to install it.
type MissingError struct{ Program, Install string }

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s is not installed: run %s (or make deps)", e.Program, e.Install)
}

var packages = map[string]string{
	"redis-server":            "redis-server",
	"redis-sentinel":          "redis-sentinel",
	"nginx":                   "nginx-light",
	"prometheus":              "prometheus",
	"promtool":                "prometheus",
	"prometheus-alertmanager": "prometheus-alertmanager",
	pgBin("postgres"):         "postgresql-15",
	pgBin("initdb"):           "postgresql-15",
	"chromium":                "chromium",
}

func missing(bin string) error {
	pkg, ok := packages[bin]
	if !ok {
		return fmt.Errorf("%s: not found in PATH", bin)
	}
	return &MissingError{Program: bin, Install: "apt-get install -y " + pkg}
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections, the process exits or ctx ends.
func waitTCP(ctx context.Context, p *Process, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before listening on %s (exit %d); see %s, which ends:\n%s", p.Name, addr, p.ExitCode(), p.LogPath, p.logTail(5))
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s: %w; see %s", p.Name, addr, ctx.Err(), p.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHTTP waits until url answers 200, the process exits or ctx ends.
func waitHTTP(ctx context.Context, p *Process, url string) error {
	client := http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start (exit %d); see %s, which ends:\n%s", p.Name, p.ExitCode(), p.LogPath, p.logTail(5))
		case <-ctx.Done():
			return fmt.Errorf("%s: no 200 from %s: %w; see %s", p.Name, url, ctx.Err(), p.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// logTail is the last n lines of the process's log: a test's temporary
// directory, log included, is gone by the time anyone reads the failure.
func (p *Process) logTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
