// Package controlplane starts a real Kubernetes control plane on 127.0.0.1
// for tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kwok, whose fake nodes run the pods the scheduler binds to them. The
// binaries come from scripts/tools.sh (`make tools`).
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Binaries the control plane runs, all in one directory.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// ControlPlane is a running control plane.
type ControlPlane struct {
	// Kubeconfig is the path of an admin kubeconfig for it.
	Kubeconfig string
	URL        string
	dir        string
	procs      []*exec.Cmd
}

// Start starts a control plane with its state under dir, from the binaries
// in bin, and waits until the API server answers /readyz.
func Start(ctx context.Context, dir, bin string) (*ControlPlane, error) {
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("control plane: %s missing in %s: `make tools` builds it", b, bin)
		}
	}
	c := &ControlPlane{dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	token, err := c.writeCredentials()
	if err != nil {
		return nil, err
	}
	if err := c.start(bin, "etcd", "--data-dir", c.path("etcd"), "--name", "default",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL); err != nil {
		return nil, err
	}
	if err := c.start(bin, "kube-apiserver", "--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[2]), "--cert-dir", c.path("pki"),
		"--service-cluster-ip-range", "10.96.0.0/16", "--authorization-mode", "RBAC",
		"--token-auth-file", c.path("tokens.csv"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", c.path("sa.pub"), "--service-account-signing-key-file", c.path("sa.key")); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, token); err != nil {
		return nil, err
	}
	kc := c.Kubeconfig
	for _, p := range []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{"--kubeconfig", kc, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
			"--service-account-private-key-file", c.path("sa.key"), "--use-service-account-credentials=false", "--controllers", "*"}},
		{"kube-scheduler", []string{"--kubeconfig", kc, "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[3])}},
		{"kwok", []string{"--kubeconfig", kc, "--manage-all-nodes=true", "--cidr", "10.244.0.1/16"}},
	} {
		if err := c.start(bin, p.name, p.args...); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// Stop stops every process, the last started first.
func (c *ControlPlane) Stop() {
	for _, p := range slices.Backward(c.procs) {
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	c.procs = nil
}

// Log is the path of a component's log.
func (c *ControlPlane) Log(name string) string { return c.path(name + ".log") }

func (c *ControlPlane) path(name string) string { return filepath.Join(c.dir, name) }

func (c *ControlPlane) start(bin, name string, args ...string) error {
	log, err := os.Create(c.Log(name))
	if err != nil {
		return fmt.Errorf("control plane: %s: %w", name, err)
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("control plane: start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// writeCredentials writes the service-account key pair, an admin token and
// the kubeconfig that uses it, and returns the token.
func (c *ControlPlane) writeCredentials() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	c.Kubeconfig = c.path("kubeconfig")
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(token + ",admin,admin,system:masters\n"),
		// The API server's certificate is self-signed, generated in pki/.
		"kubeconfig": fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, c.URL, token),
	}
	for name, data := range files {
		if err := os.WriteFile(c.path(name), data, 0o600); err != nil {
			return "", fmt.Errorf("control plane: %w", err)
		}
	}
	return token, nil
}

func (c *ControlPlane) waitReady(ctx context.Context, token string) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // self-signed, on loopback
	}}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("control plane: API server not ready (see %s): %w", c.Log("kube-apiserver"), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("control plane: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
