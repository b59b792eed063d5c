package local

import "context"

// ChatConfig is what one chat server instance is started with.
type ChatConfig struct {
	Bin  string // the chatserver binary
	Dir  string // where its log goes
	ID   string // INSTANCE_ID
	Port int    // it listens on 127.0.0.1:Port
	// DebugPort, if set, serves pprof on 127.0.0.1:DebugPort (DEBUG_ADDR).
	DebugPort int
	Env       []string // REDIS_URL, DATABASE_URL, JWT_SECRET and any other setting
}

// Chat is a running chat server instance.
type Chat struct {
	*Process
	ChatConfig
}

// StartChat starts an instance and waits until /health answers.
func StartChat(ctx context.Context, cfg ChatConfig) (*Chat, error) {
	env := append([]string{"INSTANCE_ID=" + cfg.ID, "LISTEN_ADDR=127.0.0.1:" + itoa(cfg.Port)}, cfg.Env...)
	if cfg.DebugPort != 0 {
		env = append(env, "DEBUG_ADDR=127.0.0.1:"+itoa(cfg.DebugPort))
	}
	p, err := spawn(cfg.ID, cfg.Dir, "", env, cfg.Bin)
	if err != nil {
		return nil, err
	}
	c := &Chat{Process: p, ChatConfig: cfg}
	if err := waitHTTP(ctx, p, c.URL()+"/health"); err != nil {
		p.Kill()
		return nil, err
	}
	return c, nil
}

// URL is the instance's base HTTP URL.
func (c *Chat) URL() string { return "http://127.0.0.1:" + itoa(c.Port) }

// WSURL is the instance's /ws URL.
func (c *Chat) WSURL() string { return "ws://127.0.0.1:" + itoa(c.Port) + "/ws" }

// Start starts the instance again after it has exited.
func (c *Chat) Start(ctx context.Context) error {
	<-c.Exited()
	n, err := StartChat(ctx, c.ChatConfig)
	if err != nil {
		return err
	}
	*c = *n
	return nil
}

// Addr is host:port.
func (c *Chat) Addr() string { return "127.0.0.1:" + itoa(c.Port) }

// WaitReady waits until /ready answers 200.
func (c *Chat) WaitReady(ctx context.Context) error {
	return waitHTTP(ctx, c.Process, c.URL()+"/ready")
}
