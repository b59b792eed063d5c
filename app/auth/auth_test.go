package auth

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("test-secret")

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
