// Command buildinfo prints the version of every module linked into a binary
// that imports app/wsconn, one "path version" a line (a replacement noted after the version): test binaries carry no
// module versions in their build information, real binaries do.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	_ "github.com/switchboard-dev/switchboard/app/wsconn"
)

func main() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(os.Stderr, "no build information")
		os.Exit(1)
	}
	for _, d := range bi.Deps {
		if r := d.Replace; r != nil {
			fmt.Printf("%s %s(replaced by %s)\n", d.Path, r.Version, r.Path)
			continue
		}
		fmt.Println(d.Path, d.Version)
	}
}
