package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/switchboard-dev/switchboard/nginx"
)

// Nginx is the nginx process in front of the chat instances.
type Nginx struct {
	*Process
	Port int
}

// StartNginx renders the shared template for the given instances (host:port)
// and runs nginx in the foreground with its files under dir/nginx.
// workers is worker_processes: 0 means 2, enough for the tests' thousands of
// connections without taking every core from the instances.
func StartNginx(ctx context.Context, dir string, port, workers int, servers []string) (*Nginx, error) {
	runtime, err := filepath.Abs(filepath.Join(dir, "nginx"))
	if err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	if err := os.MkdirAll(runtime, 0o755); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	if workers == 0 {
		workers = 2
	}
	conf, err := nginx.Render(nginx.Config{
		Listen: "127.0.0.1:" + itoa(port), Servers: servers, Runtime: runtime, Foreground: true,
		Workers: itoa(workers), ReusePort: true, UpstreamSources: upstreamSources,
		// The host's hard limit (20,000 here) caps each worker; Go's children
		// start with the soft limit, often 1024.
		FileLimit: fileLimit(),
	})
	if err != nil {
		return nil, err
	}
	path := filepath.Join(runtime, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	p, err := spawn("nginx", dir, "", nil, "nginx", "-p", runtime, "-e", filepath.Join(runtime, "error.log"), "-c", path)
	if err != nil {
		return nil, err
	}
	n := &Nginx{Process: p, Port: port}
	if err := waitHTTP(ctx, p, n.URL()+"/nginx-health"); err != nil {
		p.Kill()
		return nil, err
	}
	return n, nil
}

// URL is the base HTTP URL clients use.
func (n *Nginx) URL() string { return "http://127.0.0.1:" + itoa(n.Port) }

// upstreamSources let NGINX hold more than 28,000 connections to an instance
// on this host (tens of thousands in `make bench`).
var upstreamSources = []string{"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"}

// fileLimit is the hard open-file limit NGINX's workers may raise theirs to.
func fileLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Max > 1<<20 {
		return 1 << 16
	}
	return int(l.Max)
}
