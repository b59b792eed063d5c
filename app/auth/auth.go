// Package auth checks who may open a chat connection: the HS256 JWT that names
// the user, and the browser Origin.
package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrNoToken is returned when the request carries no token at all.
var ErrNoToken = errors.New("no token: send Authorization: Bearer <jwt> or ?token=<jwt>")

// Claims is what the server needs from a token.
type Claims struct {
	User    string
	Expires time.Time
}

// Verifier checks HS256 tokens signed with one secret.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// NewVerifier returns a verifier for tokens signed with secret.
func NewVerifier(secret []byte) *Verifier {
	return &Verifier{
		secret: secret,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(5*time.Second),
		),
	}
}

// Verify parses and checks a token: signature, algorithm, exp and sub.
func (v *Verifier) Verify(token string) (Claims, error) {
	var rc jwt.RegisteredClaims
	_, err := v.parser.ParseWithClaims(token, &rc, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		return Claims{}, fmt.Errorf("verify token: %w", err)
	}
	if rc.Subject == "" || len(rc.Subject) > 128 || strings.ContainsRune(rc.Subject, 0) {
		return Claims{}, errors.New("verify token: sub must name the user in 1 to 128 bytes, without NUL")
	}
	return Claims{User: rc.Subject, Expires: rc.ExpiresAt.Time}, nil
}

// FromRequest verifies the request's bearer token or token query parameter.
func (v *Verifier) FromRequest(r *http.Request) (Claims, error) {
	token := r.URL.Query().Get("token")
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return Claims{}, errors.New("authorization header: want Bearer <jwt>")
		}
		token = strings.TrimSpace(rest)
	}
	if token == "" {
		return Claims{}, ErrNoToken
	}
	return v.Verify(token)
}

// Mint signs a token for user valid for ttl: for make token, tests and the
// load tool.
func Mint(secret []byte, user string, ttl time.Duration) (string, error) {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	s, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint token for %s: %w", user, err)
	}
	return s, nil
}

// Origins decides which browser origins may connect.
type Origins struct {
	any     bool
	allowed map[string]bool
}

// NewOrigins builds the policy from ALLOWED_ORIGINS entries ("*" allows all).
func NewOrigins(list []string) Origins {
	o := Origins{allowed: map[string]bool{}}
	for _, s := range list {
		if s == "*" {
			o.any = true
		}
		o.allowed[strings.ToLower(s)] = true
	}
	return o
}

// Allowed reports whether a request with this Origin header, sent to host
// (its Host header), may connect. No Origin means the client is not a
// browser, so no cross-site risk; an origin whose host:port is the request's
// own is the server's own page (the chat page at /), the same origin, as
// gorilla/websocket's default check allows.
func (o Origins) Allowed(origin, host string) bool {
	if origin == "" || o.any || o.allowed[strings.ToLower(origin)] {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && host != "" && strings.EqualFold(u.Host, host)
}
