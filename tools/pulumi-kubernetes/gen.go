//go:build ignore

// gen writes schema-embed.json (the provider module's schema.json with its
// version set to $VERSION, compacted) and terraform-mapping-embed.json (the
// module's terraform-mapping.json, compacted), which main.go embeds.
package main

import (
	"encoding/json"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	version := os.Getenv("VERSION")
	if version == "" {
		log.Fatal("gen: VERSION is not set")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/pulumi/pulumi-kubernetes/provider/v4").Output()
	if err != nil {
		log.Fatalf("gen: go list: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "cmd", "pulumi-resource-kubernetes")
	compact(filepath.Join(dir, "schema.json"), "schema-embed.json", version)
	compact(filepath.Join(dir, "terraform-mapping.json"), "terraform-mapping-embed.json", "")
}

func compact(from, to, version string) {
	b, err := os.ReadFile(from)
	if err != nil {
		log.Fatal(err)
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		log.Fatalf("gen: %s: %v", from, err)
	}
	if version != "" {
		v["version"], _ = json.Marshal(version)
	}
	if b, err = json.Marshal(v); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		log.Fatal(err)
	}
}
