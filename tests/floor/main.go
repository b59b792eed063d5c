// Command floor is the floor of the pinned comparison (`make bench`,
// tests/pinned_test.go): a server that does only the work every delivery of
// Switchboard's protocol needs, so that docs/performance.md can show what
// that work costs next to Switchboard and Centrifugo. It is a benchmark
// helper, never a server to deploy.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/switchboard-dev/switchboard/app/auth"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "the address to serve /ws and /ready on")
	secret := flag.String("secret", "", "the JWT_SECRET the load tool's tokens are signed with")
	flag.Parse()
	if *secret == "" {
		fmt.Fprintln(os.Stderr, "floor: -secret is required: the HS256 secret of the clients' tokens")
		os.Exit(2)
	}
	if err := http.ListenAndServe(*listen, newServer(auth.NewVerifier([]byte(*secret)))); err != nil {
		fmt.Fprintf(os.Stderr, "floor: serve %s: %v\n", *listen, err)
		os.Exit(1)
	}
}
