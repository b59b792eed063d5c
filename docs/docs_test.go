// Package docs holds the project's documentation; its test keeps the docs
// and the code naming the same things.
package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/app/config"
)

// Issue 28: a doc (README.md, docs/*.md) that names an environment
// variable, a stack key or a make target that does not exist fails this
// test, and so does one that exists and no doc names. Names count where
// they are code: inline code spans and fenced blocks.

const root = ".."

var (
	inlineCode = regexp.MustCompile("`([^`\n]+)`")
	fence      = regexp.MustCompile("(?ms)^```[^\n]*\n(.*?)^```")
	// An environment variable: upper case words joined by underscores.
	envName = regexp.MustCompile(`(?:^|[^A-Za-z0-9_])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b`)
	// A stack key with its namespace, not inside an ARN (arn:aws:acm:…).
	nsKey     = regexp.MustCompile(`(?:^|[^:\w])(switchboard|aws):([A-Za-z][\w-]*(?:<name>)?)`)
	makeCall  = regexp.MustCompile(`\bmake\s+((?:[A-Z_]+=\S+\s+)*)([a-z][a-z0-9-]*)`)
	secretKey = regexp.MustCompile(`"secretKey"\s*:\s*"(\w+)"`)
	mdLink    = regexp.MustCompile(`(!?)\[[^\]]*\]\(([^)\s]+)\)`)
	tableRow  = regexp.MustCompile(`^\|(.*)\|\s*$`)
)

// external are variables of other programs that the docs name: the AWS
// SDK's region, GitHub Actions' token, the variable Grafana's provisioning
// expands, Go's cgo switch.
var external = []string{"AWS_REGION", "GITHUB_TOKEN", "DS_PROMETHEUS", "CGO_ENABLED"}

// notEnv are upper-case words with underscores in the docs that are no
// environment variables: Linux scheduler policies and a socket option.
var notEnv = []string{"SCHED_BATCH", "SCHED_IDLE", "SCHED_FIFO", "SO_TIMESTAMPNS"}

type doc struct{ path, text string }

// docs are README.md and docs/*.md.
func docs(t *testing.T) []doc {
	paths, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []doc
	for _, p := range append([]string{filepath.Join(root, "README.md")}, paths...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, doc{p, string(b)})
	}
	return out
}

// code is the text of every inline code span and fenced block of a doc.
func code(text string) []string {
	var out []string
	for _, m := range fence.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	for _, m := range inlineCode.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
		out = append(out, m[1])
	}
	return out
}

// named is what a doc names, each with where.
type named map[string][]string

func (n named) add(name, where string) {
	if !slices.Contains(n[name], where) {
		n[name] = append(n[name], where)
	}
}

// check fails on every name in docs that is not in exists, and on every
// name in required that no doc names.
func check(t *testing.T, kind string, inDocs named, exists, required []string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(inDocs)) {
		if !slices.Contains(exists, name) {
			t.Errorf("%s %s is named in %s but does not exist", kind, name, strings.Join(inDocs[name], ", "))
		}
	}
	for _, name := range required {
		if _, ok := inDocs[name]; !ok {
			t.Errorf("%s %s exists but no doc names it", kind, name)
		}
	}
}

// serverEnv is every variable the chat server reads: the names
// config.Load asks for.
func serverEnv() []string {
	var names []string
	config.Load(func(name string) string {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		return ""
	})
	return names
}

// goFiles parses the Go files under dir (tests included when tests).
func goFiles(t *testing.T, dir string, tests bool) []*ast.File {
	var out []*ast.File
	fset := token.NewFileSet()
	err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != filepath.Join(root, dir) && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || (!tests && strings.HasSuffix(p, "_test.go")) {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func str(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// toolEnv are the variables the tests, tools and scripts use: names the
// module's Go code passes to os.Getenv or os.LookupEnv or sets for a
// process ("NAME=..."), and names scripts/ and the Makefile set or expand.
// The project's own knobs (SWITCHBOARD_* and E2E_* that Go code reads or a
// script expands with a default, ${NAME:-...}) must be documented; the
// rest may be.
func toolEnv(t *testing.T) (own, all []string) {
	add := func(name string, knob bool) {
		if !envName.MatchString(name) {
			return
		}
		if !slices.Contains(all, name) {
			all = append(all, name)
		}
		if knob && (strings.HasPrefix(name, "SWITCHBOARD_") || strings.HasPrefix(name, "E2E_")) && !slices.Contains(own, name) {
			own = append(own, name)
		}
	}
	for _, f := range goFiles(t, ".", true) {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && len(n.Args) > 0 && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv") {
					if s, ok := str(n.Args[0]); ok {
						add(s, true)
					}
				}
			case *ast.BasicLit:
				if s, ok := str(n); ok {
					if name, _, found := strings.Cut(s, "="); found || strings.HasPrefix(s, "SWITCHBOARD_") {
						add(name, true)
					}
				}
			}
			return true
		})
	}
	scripts, err := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	use := regexp.MustCompile(`\$\{?([A-Z][A-Z0-9_]*)(:?[-+])?|(?m)^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)\s*[:?]?=`)
	for _, p := range append(scripts, filepath.Join(root, "Makefile")) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range use.FindAllStringSubmatch(string(b), -1) {
			add(m[1]+m[3], m[2] != "")
		}
	}
	return own, all
}

// stackKeys are the keys infra/stackconfig reads, from its source: the
// first argument of every call of a reader method whose first parameter
// is the key, and of Get on a config.Config (r.cfg, the project's
// namespace, or config.New(ctx, "aws")). A key built as "addon-"+name is
// addon-<name>.
func stackKeys(t *testing.T) []string {
	files := goFiles(t, "infra/stackconfig", false)
	keyed := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if ok && fn.Recv != nil && len(fn.Type.Params.List) > 0 && len(fn.Type.Params.List[0].Names) > 0 && fn.Type.Params.List[0].Names[0].Name == "key" {
				keyed[fn.Name.Name] = true
			}
		}
	}
	var keys []string
	add := func(ns string, arg ast.Expr) {
		name, ok := str(arg)
		if b, isBin := arg.(*ast.BinaryExpr); isBin {
			if prefix, okPrefix := str(b.X); okPrefix {
				name, ok = prefix+"<name>", true
			}
		}
		if !ok {
			return
		}
		if ns != "switchboard" {
			name = ns + ":" + name
		}
		if !slices.Contains(keys, name) {
			keys = append(keys, name)
		}
	}
	for _, f := range files {
		namespaces := map[string]string{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				// aws := config.New(r.ctx, "aws")
				if len(n.Lhs) == 1 && len(n.Rhs) == 1 {
					if call, ok := n.Rhs[0].(*ast.CallExpr); ok && len(call.Args) == 2 {
						if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "New" {
							if ns, ok := str(call.Args[1]); ok && ns != "" {
								namespaces[n.Lhs[0].(*ast.Ident).Name] = ns
							}
						}
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || len(n.Args) == 0 {
					return true
				}
				switch x := sel.X.(type) {
				case *ast.Ident: // r.integer("replicas", …), aws.Get("region")
					if ns, ok := namespaces[x.Name]; ok && sel.Sel.Name == "Get" {
						add(ns, n.Args[0])
					} else if x.Name == "r" && keyed[sel.Sel.Name] {
						add("switchboard", n.Args[0])
					}
				case *ast.SelectorExpr: // r.cfg.Get("alertReceivers")
					if x.Sel.Name == "cfg" && sel.Sel.Name == "Get" {
						add("switchboard", n.Args[0])
					}
				}
			}
			return true
		})
	}
	if len(keys) < 40 {
		t.Fatalf("found %d stack keys in infra/stackconfig: the parse misses its readers", len(keys))
	}
	return keys
}

// makeTargets are the Makefile's rules.
func makeTargets(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):([^=]|$)`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

// stackTableKeys are the first-column names of tables whose first header
// is "key": `replicas`, `nodeMin`, `aws:region`, `addon-<name>`.
func stackTableKeys(text string) []string {
	var out []string
	inTable := false
	for _, line := range strings.Split(text, "\n") {
		m := tableRow.FindStringSubmatch(line)
		if m == nil {
			inTable = false
			continue
		}
		cells := strings.Split(m[1], "|")
		first := strings.TrimSpace(cells[0])
		if first == "key" {
			inTable = true
			continue
		}
		if !inTable {
			continue
		}
		for _, c := range inlineCode.FindAllStringSubmatch(first, -1) {
			out = append(out, c[1])
		}
	}
	return out
}

func TestDocsNameWhatExists(t *testing.T) {
	env, keys, targets := named{}, named{}, named{}
	var secretKeys []string
	for _, d := range docs(t) {
		where := strings.TrimPrefix(d.path, root+"/")
		for _, c := range code(d.text) {
			for _, m := range envName.FindAllStringSubmatch(c, -1) {
				if !slices.Contains(notEnv, m[1]) {
					env.add(m[1], where)
				}
			}
			for _, m := range nsKey.FindAllStringSubmatch(c, -1) {
				key := m[2]
				if m[1] != "switchboard" {
					key = m[1] + ":" + key
				}
				keys.add(key, where)
			}
			for _, m := range makeCall.FindAllStringSubmatch(c, -1) {
				targets.add(m[2], where)
			}
		}
		for _, k := range stackTableKeys(d.text) {
			keys.add(k, where)
		}
		for _, m := range secretKey.FindAllStringSubmatch(d.text, -1) {
			secretKeys = append(secretKeys, m[1])
		}
	}

	server := serverEnv()
	own, tools := toolEnv(t)
	t.Run("env", func(t *testing.T) {
		check(t, "environment variable", env, slices.Concat(server, tools, external), slices.Concat(server, own))
	})
	t.Run("stack keys", func(t *testing.T) {
		// alertReceivers names the keys of its secret parts (docs/alerting.md).
		check(t, "stack key", keys, slices.Concat(stackKeys(t), secretKeys), stackKeys(t))
	})
	t.Run("make targets", func(t *testing.T) {
		mt := makeTargets(t)
		check(t, "make target", targets, mt, mt)
	})
}

// Every relative link of README.md, docs/*.md and infra/README.md reaches a
// file or folder. Pictures (![...](...)) are generated and not checked.
func TestDocLinksResolve(t *testing.T) {
	all := append(docs(t), doc{path: filepath.Join(root, "infra", "README.md")})
	for _, d := range all {
		if d.text == "" {
			b, err := os.ReadFile(d.path)
			if err != nil {
				t.Fatal(err)
			}
			d.text = string(b)
		}
		for _, m := range mdLink.FindAllStringSubmatch(fence.ReplaceAllString(d.text, ""), -1) {
			target := m[2]
			if m[1] == "!" || strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			if _, err := os.Stat(filepath.Join(filepath.Dir(d.path), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", d.path, m[2])
			}
		}
	}
}
