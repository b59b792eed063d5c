package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden from the program's current resources")

// componentTypes are the types that only group resources: a refactoring may
// add or move them without changing what is deployed.
var componentTypes = []string{"switchboard:index:Service"}

// goldenResource is what a stack deploys of one resource: its type, name,
// inputs (secrets marked) and the resources it waits for. Parents and URNs
// are left out: moving a resource under a component changes them only.
type goldenResource struct {
	Type   string   `json:"type"`
	Name   string   `json:"name"`
	Inputs any      `json:"inputs"`
	Deps   []string `json:"deps,omitempty"`
}

// Each stack file declares exactly the resources recorded in
// testdata/golden/<stack>.json before the stack programs became users of
// the blueprint package: same set, same inputs, same dependencies.
func TestStackFilesDeclareTheGoldenResources(t *testing.T) {
	for _, name := range []string{"dev", "prod", "staging"} {
		t.Run(name, func(t *testing.T) {
			s := &stack{name: name}
			if err := s.run(stackFileConfig(t, name)); err != nil {
				t.Fatalf("program: %v", err)
			}
			got, err := json.MarshalIndent(goldenResources(s), "", " ")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join("testdata", "golden", name+".json")
			if *updateGolden {
				if err := os.WriteFile(file, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				diffGolden(t, want, got)
			}
		})
	}
}

// The stacks deployed before the blueprint keep their resources: each
// resource the Service component parents is aliased to the stack's root,
// where it was, so `pulumi up` moves it (its children with it) instead of
// replacing it.
func TestStackResourcesMovedUnderTheServiceKeepTheirOldURNs(t *testing.T) {
	for _, name := range []string{"dev", "prod", "staging"} {
		t.Run(name, func(t *testing.T) {
			s := &stack{name: name}
			if err := s.run(stackFileConfig(t, name)); err != nil {
				t.Fatalf("program: %v", err)
			}
			moved := 0
			for _, r := range s.resources {
				if !slices.Contains(componentTypes, string(r.Parent.Type())) {
					continue
				}
				moved++
				if !slices.ContainsFunc(r.Aliases, func(a *pulumirpc.Alias) bool { return a.GetSpec().GetNoParent() }) {
					t.Errorf("%s %s has no alias to the stack's root: an update would replace it", r.Type, r.Name)
				}
			}
			if moved == 0 {
				t.Error("no resource under the Service component")
			}
		})
	}
}

func goldenResources(s *stack) []goldenResource {
	var out []goldenResource
	for _, r := range s.resources {
		if slices.Contains(componentTypes, r.Type) {
			continue
		}
		g := goldenResource{Type: r.Type, Name: r.Name, Inputs: marked(resource.NewObjectProperty(r.Inputs))}
		for _, d := range r.Deps {
			if t := string(d.Type()); !slices.Contains(componentTypes, t) {
				g.Deps = append(g.Deps, t+"::"+d.Name())
			}
		}
		slices.Sort(g.Deps)
		g.Deps = slices.Compact(g.Deps)
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b goldenResource) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// marked is plain, with each secret kept as {"secret": value}: a value
// that stops being secret is a difference.
func marked(v resource.PropertyValue) any {
	switch {
	case v.IsSecret():
		return map[string]any{"secret": marked(v.SecretValue().Element)}
	case v.IsOutput():
		if v.OutputValue().Secret {
			return map[string]any{"secret": marked(v.OutputValue().Element)}
		}
		return marked(v.OutputValue().Element)
	case v.IsObject():
		m := map[string]any{}
		for k, e := range v.ObjectValue() {
			m[string(k)] = marked(e)
		}
		return m
	case v.IsArray():
		a := []any{}
		for _, e := range v.ArrayValue() {
			a = append(a, marked(e))
		}
		return a
	case v.IsComputed(), v.IsNull():
		return nil
	}
	return v.V
}

// diffGolden names the resources that differ, by type and name.
func diffGolden(t *testing.T, want, got []byte) {
	t.Helper()
	index := func(b []byte) map[string]string {
		var rs []goldenResource
		if err := json.Unmarshal(b, &rs); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range rs {
			j, _ := json.Marshal(r)
			m[r.Type+" "+r.Name] += string(j)
		}
		return m
	}
	w, g := index(want), index(got)
	for k, v := range w {
		switch gv, ok := g[k]; {
		case !ok:
			t.Errorf("missing %s", k)
		case gv != v:
			t.Errorf("changed %s:\n want %s\n  got %s", k, v, gv)
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			t.Errorf("new %s", k)
		}
	}
	if !t.Failed() {
		t.Error(fmt.Sprintf("order or duplicates differ (%d recorded, %d now)", len(w), len(g)))
	}
}
