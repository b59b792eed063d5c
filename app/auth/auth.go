// Package auth checks who may open a chat connection: the HS256 JWT that names
// the user and the rooms they may use, and the browser Origin.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

// The token's transports in the WebSocket handshake: a browser cannot set
// Authorization on a WebSocket, so it offers two subprotocols, Subprotocol
// and BearerPrefix+<jwt> (a JWT is base64url and dots, a valid header
// token). The server selects Subprotocol and never echoes the bearer entry.
const (
	Subprotocol  = "switchboard"
	BearerPrefix = "bearer."
)

// ErrNoToken is returned when the request carries no token at all.
var ErrNoToken = errors.New("no token: send Authorization: Bearer <jwt>, or the subprotocols " +
	Subprotocol + " and " + BearerPrefix + "<jwt> in Sec-WebSocket-Protocol, or ?token=<jwt>")

// MaxRoomPatterns bounds the entries of a token's rooms claim.
const MaxRoomPatterns = 256

// Claims is what the server needs from a token.
type Claims struct {
	User    string
	Expires time.Time
	// Rooms is the token's rooms claim: room names and prefixes ending in
	// "*" ("team-a.*"). Nil (no claim): every room. Empty (rooms: []): none.
	Rooms []string
}

// MayJoin reports whether the token lets its holder join room and read its
// history: always without a rooms claim, else if an entry names room or is
// a prefix of it followed by "*".
func (c Claims) MayJoin(room string) bool {
	if c.Rooms == nil {
		return true
	}
	for _, p := range c.Rooms {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(room, prefix) {
				return true
			}
		} else if p == room {
			return true
		}
	}
	return false
}

// Option is a check of NewVerifier's besides signature, algorithm, exp and sub.
type Option func(*Verifier)

// RequireIssuer refuses tokens whose iss is not issuer; "" checks nothing.
func RequireIssuer(issuer string) Option { return func(v *Verifier) { v.issuer = issuer } }

// RequireAudience refuses tokens whose aud does not hold audience; ""
// checks nothing.
func RequireAudience(audience string) Option { return func(v *Verifier) { v.audience = audience } }

// MaxTTL refuses tokens that claim a lifetime longer than d: exp - iat, or
// without iat, exp - now (a token without iat valid for 10 years is
// refused). 0 checks nothing.
func MaxTTL(d time.Duration) Option { return func(v *Verifier) { v.maxTTL = d } }

// Verifier checks HS256 tokens signed with one secret.
type Verifier struct {
	secret   []byte
	issuer   string
	audience string
	maxTTL   time.Duration
	parser   *jwt.Parser
	now      func() time.Time
}

// leeway is the clock skew allowed between the token's minter and the server.
const leeway = 5 * time.Second

// NewVerifier returns a verifier for tokens signed with secret.
func NewVerifier(secret []byte, opts ...Option) *Verifier {
	v := &Verifier{secret: secret, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		// iat in the future is refused: a max TTL measured from it would
		// otherwise be no bound at all.
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	if v.issuer != "" {
		popts = append(popts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		popts = append(popts, jwt.WithAudience(v.audience))
	}
	v.parser = jwt.NewParser(popts...)
	return v
}

// tokenClaims are the claims read from and written to a token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Rooms roomsClaim `json:"rooms,omitzero"`
}

// roomsClaim is the optional rooms claim; set tells an absent claim (every
// room) from an empty one (no room).
type roomsClaim struct {
	set   bool
	rooms []string
}

func (r roomsClaim) IsZero() bool { return !r.set }

func (r roomsClaim) MarshalJSON() ([]byte, error) {
	if r.rooms == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(r.rooms)
}

func (r *roomsClaim) UnmarshalJSON(b []byte) error {
	r.set = true
	if err := json.Unmarshal(b, &r.rooms); err != nil || r.rooms == nil {
		return errors.New(`rooms: want a JSON array of room names and prefixes ending in "*"`)
	}
	return CheckRooms(r.rooms)
}

// CheckRooms checks the entries of a rooms claim: each a room name
// ([A-Za-z0-9_.-]{1,64}) or a prefix of one followed by "*" ("team-a.*";
// "*" alone is every room), at most MaxRoomPatterns of them.
func CheckRooms(rooms []string) error {
	if len(rooms) > MaxRoomPatterns {
		return fmt.Errorf("rooms: %d entries, want at most %d", len(rooms), MaxRoomPatterns)
	}
	for _, p := range rooms {
		prefix, wild := strings.CutSuffix(p, "*")
		if ok := protocol.ValidRoom(prefix) || (wild && prefix == ""); !ok || (wild && len(prefix) > 63) {
			return fmt.Errorf(`rooms: %q is neither a room name ([A-Za-z0-9_.-]{1,64}) nor a prefix of one followed by "*"`, p)
		}
	}
	return nil
}

// Verify parses and checks a token: signature, algorithm, exp, iat (not
// in the future), sub, the rooms claim, and the issuer, audience and
// lifetime of the verifier's options.
func (v *Verifier) Verify(token string) (Claims, error) {
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		// The parser reports every failed check; say what was wanted.
		var hints []string
		if v.issuer != "" && tc.Issuer != v.issuer {
			hints = append(hints, fmt.Sprintf("iss %q is not the issuer this server accepts (%q)", tc.Issuer, v.issuer))
		}
		if v.audience != "" && !slices.Contains(tc.Audience, v.audience) {
			hints = append(hints, fmt.Sprintf("aud %q does not name this server's audience (%q)", []string(tc.Audience), v.audience))
		}
		if errors.Is(err, jwt.ErrTokenUsedBeforeIssued) {
			hints = append(hints, "iat lies in the future")
		}
		if len(hints) > 0 {
			return Claims{}, fmt.Errorf("verify token: %s: %w", strings.Join(hints, "; "), err)
		}
		return Claims{}, fmt.Errorf("verify token: %w", err)
	}
	rc := tc.RegisteredClaims
	if rc.Subject == "" || len(rc.Subject) > 128 || strings.ContainsRune(rc.Subject, 0) {
		return Claims{}, errors.New("verify token: sub must name the user in 1 to 128 bytes, without NUL")
	}
	if v.maxTTL > 0 {
		exp := rc.ExpiresAt.Time
		if rc.IssuedAt != nil {
			if life := exp.Sub(rc.IssuedAt.Time); life > v.maxTTL {
				return Claims{}, fmt.Errorf("verify token: lifetime exp - iat of %s exceeds the %s this server accepts (JWT_MAX_TTL)", life, v.maxTTL)
			}
		} else if left := exp.Sub(v.now()); left > v.maxTTL {
			return Claims{}, fmt.Errorf("verify token: no iat, and exp lies %s ahead, past the %s lifetime this server accepts (JWT_MAX_TTL)", left.Round(time.Second), v.maxTTL)
		}
	}
	c := Claims{User: rc.Subject, Expires: rc.ExpiresAt.Time}
	if tc.Rooms.set {
		c.Rooms = append([]string{}, tc.Rooms.rooms...)
	}
	return c, nil
}

// FromRequest verifies the request's token: from Authorization: Bearer, the
// bearer.<jwt> subprotocol of Sec-WebSocket-Protocol, or the token query
// parameter, in that order.
func (v *Verifier) FromRequest(r *http.Request) (Claims, error) {
	token, err := TokenFromRequest(r)
	if err != nil {
		return Claims{}, err
	}
	return v.Verify(token)
}

// TokenFromRequest returns the request's token, unverified (see FromRequest).
func TokenFromRequest(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", errors.New("authorization header: want Bearer <jwt>")
		}
		if token := strings.TrimSpace(rest); token != "" {
			return token, nil
		}
		return "", ErrNoToken
	}
	var token string
	var offered bool
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			p = strings.TrimSpace(p)
			switch {
			case p == Subprotocol:
				offered = true
			case strings.HasPrefix(p, BearerPrefix):
				if token != "" {
					return "", errors.New("Sec-WebSocket-Protocol: more than one " + BearerPrefix + "<jwt> entry")
				}
				token = strings.TrimPrefix(p, BearerPrefix)
			}
		}
	}
	if token != "" {
		if !offered {
			// The server selects Subprotocol: without it offered the
			// browser would fail the handshake.
			return "", errors.New("Sec-WebSocket-Protocol: offer " + Subprotocol + " alongside " + BearerPrefix + "<jwt>")
		}
		return token, nil
	}
	if token = r.URL.Query().Get("token"); token != "" {
		return token, nil
	}
	return "", ErrNoToken
}

// Subprotocols are the Sec-WebSocket-Protocol entries a client offers to
// send token: Subprotocol and BearerPrefix+token.
func Subprotocols(token string) []string {
	return []string{Subprotocol, BearerPrefix + token}
}

// MintOption sets a claim of a token Mint signs.
type MintOption func(*tokenClaims)

// Issuer sets the token's iss.
func Issuer(iss string) MintOption { return func(c *tokenClaims) { c.Issuer = iss } }

// Audience sets the token's aud.
func Audience(aud string) MintOption {
	return func(c *tokenClaims) { c.Audience = jwt.ClaimStrings{aud} }
}

// Rooms sets the token's rooms claim (see Claims.Rooms): room names and
// prefixes ending in "*". Without it the token opens every room.
func Rooms(rooms ...string) MintOption {
	return func(c *tokenClaims) { c.Rooms = roomsClaim{set: true, rooms: rooms} }
}

// Mint signs a token for user valid for ttl: for the token subcommand,
// tests and the load tool.
func Mint(secret []byte, user string, ttl time.Duration, opts ...MintOption) (string, error) {
	now := time.Now()
	c := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	for _, o := range opts {
		o(&c)
	}
	if c.Rooms.set {
		if err := CheckRooms(c.Rooms.rooms); err != nil {
			return "", fmt.Errorf("mint token for %s: %w", user, err)
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
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
