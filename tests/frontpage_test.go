package tests

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdImage is a Markdown image: ![alt](path).
var mdImage = regexp.MustCompile(`!\[([^\]]*)\]\(([^)\s]+)\)`)

// The front page's pictures (README.md's images: the topology SVGs and the
// chat page's screenshot) render in Chromium. With SWITCHBOARD_SCREENSHOT=path
// (make docs) the test also writes them, one under the other with their alt
// text, to path as a PNG: docs/img/front-page.png. They are shown at their
// natural size, where the topologies' labels are legible; GitHub scales them
// down to its column and opens them full size on a click.
func TestFrontPagePicturesRenderInChromium(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	images := mdImage.FindAllStringSubmatch(string(readme), -1)
	if len(images) == 0 {
		t.Fatal("README.md shows no picture")
	}
	var body strings.Builder
	for _, m := range images {
		path := filepath.Join(root, filepath.FromSlash(m[2]))
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("README.md shows %s: %v", m[2], err)
		}
		fmt.Fprintf(&body, "<figure><figcaption>%s</figcaption><img src=\"file://%s\"></figure>\n", html.EscapeString(m[1]), html.EscapeString(path))
	}
	page := filepath.Join(t.TempDir(), "front-page.html")
	doc := `<!doctype html><html><head><meta charset="utf-8"><style>
body { margin: 0; padding: 8px 24px; background: #fff; font: 22px sans-serif; color: #1f2937; width: max-content; }
figure { margin: 16px 0 32px; } figcaption { font-weight: bold; margin-bottom: 8px; }
img { display: block; border: 1px solid #d1d5db; }
</style></head><body>` + body.String() + "</body></html>"
	if err := os.WriteFile(page, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	p := openPage(t, "file://"+page)
	p.waitFor(t, "every picture loaded",
		`document.readyState + " " + [...document.images].filter(i => i.complete && i.naturalWidth > 0).length`,
		fmt.Sprintf("complete %d", len(images)))
	shot := os.Getenv("SWITCHBOARD_SCREENSHOT")
	if shot == "" {
		return
	}
	var size [2]int
	for i, expr := range []string{`document.documentElement.scrollWidth`, `document.documentElement.scrollHeight`} {
		v, err := p.eval(expr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(v, &size[i]); err != nil {
			t.Fatalf("%s: %q: %v", expr, v, err)
		}
	}
	if err := p.screenshot(shot, size[0], size[1]); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	report.Logf(t, "front page: %d pictures, %dx%d, written to %s", len(images), size[0], size[1], shot)
}
