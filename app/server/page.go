package server

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed page
var page embed.FS

// pageHandler serves the small chat page at /: static files, no build step.
func pageHandler() http.Handler {
	sub, _ := fs.Sub(page, "page") // the directory is embedded, so Sub cannot fail
	return http.FileServerFS(sub)
}
