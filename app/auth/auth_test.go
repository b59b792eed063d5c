package auth

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("auth-test-secret-0123456789abcdef")

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyAcceptsAMintedToken(t *testing.T) {
	tok, err := Mint(secret, "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewVerifier(secret).Verify(tok)
	if err != nil || c.User != "alice" || time.Until(c.Expires) <= 0 {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	cases := map[string]string{
		"garbage":         "not.a.jwt",
		"wrong secret":    sign(t, jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"sub": "a", "exp": exp}),
		"expired":         sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Minute).Unix()}),
		"no exp":          sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a"}),
		"no sub":          sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": exp}),
		"NUL in sub":      sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a\x00b", "exp": exp}),
		"HS512 not HS256": sign(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "a", "exp": exp}),
		"alg none":        sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "a", "exp": exp}),
	}
	v := NewVerifier(secret)
	for name, tok := range cases {
		if c, err := v.Verify(tok); err == nil {
			t.Errorf("%s: accepted as %+v", name, c)
		}
	}
}

func TestFromRequestReadsHeaderOrQuery(t *testing.T) {
	tok, _ := Mint(secret, "bob", time.Minute)
	v := NewVerifier(secret)
	cases := []struct {
		name, url, header string
		ok                bool
	}{
		{"bearer header", "/ws", "Bearer " + tok, true},
		{"query", "/ws?token=" + tok, "", true},
		{"header wins over query", "/ws?token=bad", "Bearer " + tok, true},
		{"missing", "/ws", "", false},
		{"basic scheme", "/ws", "Basic " + tok, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.url, nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		claims, err := v.FromRequest(r)
		if (err == nil) != c.ok || (c.ok && claims.User != "bob") {
			t.Errorf("%s: claims %+v err %v, want ok=%v", c.name, claims, err, c.ok)
		}
	}
}

// A browser cannot set Authorization on a WebSocket: it offers the
// subprotocols switchboard and bearer.<jwt>, in one header or several.
func TestFromRequestReadsTheBearerSubprotocol(t *testing.T) {
	tok, _ := Mint(secret, "carol", time.Minute)
	other, _ := Mint(secret, "dave", time.Minute)
	v := NewVerifier(secret)
	cases := []struct {
		name      string
		protocols []string // Sec-WebSocket-Protocol header lines
		url, auth string
		user      string // "": refused
	}{
		{"one line", []string{"switchboard, bearer." + tok}, "/ws", "", "carol"},
		{"two lines", []string{"bearer." + tok, "switchboard"}, "/ws", "", "carol"},
		{"subprotocol wins over query", []string{"switchboard, bearer." + tok}, "/ws?token=" + other, "", "carol"},
		{"authorization wins over subprotocol", []string{"switchboard, bearer." + other}, "/ws", "Bearer " + tok, "carol"},
		{"bearer without switchboard", []string{"bearer." + tok}, "/ws", "", ""},
		{"two bearer entries", []string{"switchboard, bearer." + tok + ", bearer." + other}, "/ws", "", ""},
		{"switchboard alone", []string{"switchboard"}, "/ws", "", ""},
		{"bad token", []string{"switchboard, bearer.x.y.z"}, "/ws?token=" + tok, "", ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.url, nil)
		for _, p := range c.protocols {
			r.Header.Add("Sec-WebSocket-Protocol", p)
		}
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		claims, err := v.FromRequest(r)
		if c.user == "" {
			if err == nil {
				t.Errorf("%s: accepted as %+v", c.name, claims)
			}
			continue
		}
		if err != nil || claims.User != c.user {
			t.Errorf("%s: claims %+v err %v, want %s", c.name, claims, err, c.user)
		}
	}
	if got := Subprotocols(tok); len(got) != 2 || got[0] != Subprotocol || got[1] != BearerPrefix+tok {
		t.Errorf("Subprotocols = %q", got)
	}
}

// Issuer and audience are checked when the verifier is given them, and
// the refusal names what was wanted.
func TestIssuerAndAudience(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	tok := func(c jwt.MapClaims) string {
		c["sub"], c["exp"] = "a", exp
		return sign(t, jwt.SigningMethodHS256, secret, c)
	}
	v := NewVerifier(secret, RequireIssuer("https://id.example"), RequireAudience("switchboard"))
	for _, c := range []struct {
		name, token, want string // want: "" accepted, else in the error
	}{
		{"both right", tok(jwt.MapClaims{"iss": "https://id.example", "aud": "switchboard"}), ""},
		{"aud among several", tok(jwt.MapClaims{"iss": "https://id.example", "aud": []string{"other", "switchboard"}}), ""},
		{"wrong iss", tok(jwt.MapClaims{"iss": "https://evil.example", "aud": "switchboard"}), `iss "https://evil.example" is not the issuer this server accepts ("https://id.example")`},
		{"no iss", tok(jwt.MapClaims{"aud": "switchboard"}), "issuer"},
		{"wrong aud", tok(jwt.MapClaims{"iss": "https://id.example", "aud": "other"}), `does not name this server's audience ("switchboard")`},
		{"no aud", tok(jwt.MapClaims{"iss": "https://id.example"}), "audience"},
	} {
		_, err := v.Verify(c.token)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
	// Without the options neither is checked.
	if _, err := NewVerifier(secret).Verify(tok(jwt.MapClaims{"iss": "anyone", "aud": "anything"})); err != nil {
		t.Errorf("no issuer or audience required: %v", err)
	}
	// Mint writes what the verifier checks.
	minted, err := Mint(secret, "a", time.Minute, Issuer("https://id.example"), Audience("switchboard"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(minted); err != nil {
		t.Errorf("minted with issuer and audience: %v", err)
	}
}

// A token's lifetime is exp - iat; without iat, what is left of it: a
// 10-year token is refused either way, and so is an iat in the future,
// which would make exp - iat no bound.
func TestMaxTTL(t *testing.T) {
	now := time.Now()
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	v := NewVerifier(secret, MaxTTL(24*time.Hour))
	for _, c := range []struct {
		name   string
		claims jwt.MapClaims
		want   string
	}{
		{"24h with iat", jwt.MapClaims{"iat": at(0), "exp": at(24 * time.Hour)}, ""},
		{"an hour left of 24h", jwt.MapClaims{"iat": at(-23 * time.Hour), "exp": at(time.Hour)}, ""},
		{"25h with iat", jwt.MapClaims{"iat": at(0), "exp": at(25 * time.Hour)}, "lifetime exp - iat of 25h0m0s exceeds the 24h0m0s"},
		{"issued long ago, an hour left", jwt.MapClaims{"iat": at(-30 * 24 * time.Hour), "exp": at(time.Hour)}, "exceeds"},
		{"10 years without iat", jwt.MapClaims{"exp": at(10 * 365 * 24 * time.Hour)}, "no iat, and exp lies"},
		{"an hour without iat", jwt.MapClaims{"exp": at(time.Hour)}, ""},
		{"iat in the future", jwt.MapClaims{"iat": at(10 * 365 * 24 * time.Hour), "exp": at(10*365*24*time.Hour + time.Hour)}, "iat lies in the future"},
	} {
		c.claims["sub"] = "a"
		_, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, c.claims))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
	long, _ := Mint(secret, "a", 10*365*24*time.Hour)
	if _, err := NewVerifier(secret).Verify(long); err != nil {
		t.Errorf("no max TTL: a long token is refused: %v", err)
	}
}

// Without a rooms claim a token opens every room; with one, only the rooms
// it names or whose name starts with a prefix it names before "*".
func TestRoomsClaim(t *testing.T) {
	v := NewVerifier(secret)
	open, _ := Mint(secret, "a", time.Minute)
	c, err := v.Verify(open)
	if err != nil || c.Rooms != nil || !c.MayJoin("anything") {
		t.Fatalf("no rooms claim: %+v %v, want every room", c, err)
	}
	scoped, err := Mint(secret, "a", time.Minute, Rooms("lobby", "team-a.*"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err = v.Verify(scoped); err != nil {
		t.Fatal(err)
	}
	for room, want := range map[string]bool{
		"lobby": true, "lobby2": false, "team-a.x": true, "team-a.": true, "team-a": false, "team-b.x": false, "Lobby": false,
	} {
		if got := c.MayJoin(room); got != want {
			t.Errorf("rooms %q: MayJoin(%q) = %v, want %v", c.Rooms, room, got, want)
		}
	}
	none, _ := Mint(secret, "a", time.Minute, Rooms())
	if c, err = v.Verify(none); err != nil || c.Rooms == nil || c.MayJoin("lobby") {
		t.Errorf("rooms []: %+v %v, want no room", c, err)
	}
	all, _ := Mint(secret, "a", time.Minute, Rooms("*"))
	if c, err = v.Verify(all); err != nil || !c.MayJoin("lobby") {
		t.Errorf(`rooms ["*"]: %+v %v, want every room`, c, err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	for name, rooms := range map[string]any{
		"a string":        "lobby",
		"null":            nil,
		"a number inside": []any{"lobby", 7},
		"a space":         []string{"lob by"},
		"star inside":     []string{"te*am"},
		"too long":        []string{strings.Repeat("a", 65)},
		"empty entry":     []string{""},
	} {
		tok := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "exp": exp, "rooms": rooms})
		if c, err := v.Verify(tok); err == nil {
			t.Errorf("rooms %s: accepted as %+v", name, c)
		} else if !strings.Contains(err.Error(), "rooms") {
			t.Errorf("rooms %s: %v, want the claim named", name, err)
		}
	}
	if _, err := Mint(secret, "a", time.Minute, Rooms("bad room")); err == nil {
		t.Error("Mint accepted a bad rooms entry")
	}
}

func TestOrigins(t *testing.T) {
	o := NewOrigins([]string{"http://localhost:8080", "https://chat.example.com"})
	const host = "chat.internal:8080" // the Host the request was sent to
	for origin, want := range map[string]bool{
		"":                                       true,
		"http://localhost:8080":                  true,
		"HTTPS://CHAT.EXAMPLE.COM":               true,
		"https://evil.example":                   false,
		"http://localhost:8081":                  false,
		"http://chat.internal:8080":              true,  // the server's own page
		"http://chat.internal:9090":              false, // same host, another origin
		"http://evil.example/chat.internal:8080": false,
		"%":                                      false,
	} {
		if got := o.Allowed(origin, host); got != want {
			t.Errorf("Allowed(%q, %q) = %v, want %v", origin, host, got, want)
		}
	}
	if o.Allowed("http://x", "") {
		t.Error("a request without a Host allows any origin")
	}
	if !NewOrigins([]string{"*"}).Allowed("https://anything.example", host) {
		t.Error("* does not allow every origin")
	}
}
