// Package grafana writes Grafana documents: an importable dashboard from a
// list of rows and panels, and Grafana-managed alert rules from a Prometheus
// rule file. It knows Grafana's formats, not Switchboard's metrics.
package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// SchemaVersion is the dashboard schema of Grafana 12; older Grafana 11
// imports it too, newer ones migrate it on load.
const SchemaVersion = 41

// Input is the name of the datasource input that "Import dashboard" asks
// for; every query refers to it as ${DS_PROMETHEUS}.
const Input = "DS_PROMETHEUS"

// Kinds of panel.
const (
	TimeSeries = "timeseries"
	Stat       = "stat"
	Heatmap    = "heatmap"
)

// Dashboard is what Render needs to write an importable dashboard.
type Dashboard struct {
	UID, Title, Description string
	Tags                    []string
	Variables               []Variable
	Rows                    []Row
}

// Variable is a query variable over label values.
type Variable struct {
	Name, Label string
	Query       string // label_values(...)
	// All adds an "All" option matching every value, including a missing
	// label (so a namespace variable works where there is no namespace).
	All     bool
	Default string // preselected value when All is false
}

// Row groups panels under a title; panels flow left to right, Width
// units of 24 each, wrapping to the next line.
type Row struct {
	Title  string
	Panels []Panel
}

// Panel is one graph, stat or heatmap.
type Panel struct {
	Kind, Title, Description string
	Unit                     string // Grafana unit id: s, bytes, ops, short, percentunit
	Width                    int    // of 24; 8 when 0
	Queries                  []Query
}

// Query is one PromQL target of a panel.
type Query struct {
	Expr, Legend string
}

const panelHeight = 8

// Render writes the dashboard as Grafana's JSON model, ready for "Import
// dashboard" with the Prometheus datasource as its one input.
func Render(d Dashboard) ([]byte, error) {
	ds := map[string]string{"type": "prometheus", "uid": "${" + Input + "}"}
	var panels []any
	id, y := 0, 0
	kinds := map[string]bool{}
	for _, row := range d.Rows {
		id++
		panels = append(panels, map[string]any{
			"type": "row", "id": id, "title": row.Title, "collapsed": false,
			"gridPos": grid(0, y, 24, 1), "panels": []any{},
		})
		y++
		x := 0
		for _, p := range row.Panels {
			if p.Description == "" || p.Unit == "" || len(p.Queries) == 0 {
				return nil, fmt.Errorf("panel %q: want a description, a unit and at least one query", p.Title)
			}
			w := p.Width
			if w == 0 {
				w = 8
			}
			if x+w > 24 {
				x, y = 0, y+panelHeight
			}
			id++
			kinds[p.Kind] = true
			panels = append(panels, panel(id, p, ds, grid(x, y, w, panelHeight)))
			x += w
		}
		y += panelHeight
	}
	requires := []any{
		map[string]string{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "11.0.0"},
		map[string]string{"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
	}
	for _, k := range []string{Heatmap, Stat, TimeSeries} {
		if kinds[k] {
			requires = append(requires, map[string]string{"type": "panel", "id": k, "name": k, "version": ""})
		}
	}
	var vars []any
	for _, v := range d.Variables {
		vars = append(vars, variable(v, ds))
	}
	model := map[string]any{
		"__inputs": []any{map[string]string{
			"name": Input, "label": "Prometheus", "type": "datasource",
			"description": "The Prometheus that scrapes the chat instances",
			"pluginId":    "prometheus", "pluginName": "Prometheus",
		}},
		"__requires":    requires,
		"uid":           d.UID,
		"title":         d.Title,
		"description":   d.Description,
		"tags":          d.Tags,
		"schemaVersion": SchemaVersion,
		"version":       1,
		"editable":      true,
		"graphTooltip":  1,
		"refresh":       "30s",
		"time":          map[string]string{"from": "now-1h", "to": "now"},
		"timezone":      "browser",
		"templating":    map[string]any{"list": vars},
		"annotations":   map[string]any{"list": []any{}},
		"links":         []any{},
		"panels":        panels,
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // PromQL's > and < stay readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(model); err != nil {
		return nil, fmt.Errorf("render dashboard %s: %w", d.UID, err)
	}
	return out.Bytes(), nil
}

func grid(x, y, w, h int) map[string]int { return map[string]int{"x": x, "y": y, "w": w, "h": h} }

func panel(id int, p Panel, ds map[string]string, pos map[string]int) map[string]any {
	var targets []any
	for i, q := range p.Queries {
		t := map[string]any{
			"refId": string(rune('A' + i)), "datasource": ds, "expr": q.Expr,
			"legendFormat": q.Legend, "range": true, "editorMode": "code",
		}
		if p.Kind == Heatmap {
			t["format"] = "heatmap"
		}
		targets = append(targets, t)
	}
	defaults := map[string]any{"unit": p.Unit}
	options := map[string]any{}
	switch p.Kind {
	case TimeSeries:
		defaults["min"] = 0
		defaults["custom"] = map[string]any{"fillOpacity": 10, "showPoints": "never"}
		options["legend"] = map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true}
		options["tooltip"] = map[string]any{"mode": "multi", "sort": "desc"}
	case Stat:
		options["reduceOptions"] = map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}
		options["colorMode"] = "value"
		options["graphMode"] = "area"
	case Heatmap:
		// The buckets come from the histogram: Grafana must not re-bucket them.
		options["calculate"] = false
		options["yAxis"] = map[string]any{"unit": p.Unit}
		options["cellGap"] = 1
		options["color"] = map[string]any{"mode": "scheme", "scheme": "Oranges", "steps": 64}
	}
	return map[string]any{
		"type": p.Kind, "id": id, "title": p.Title, "description": p.Description,
		"datasource": ds, "gridPos": pos, "targets": targets, "options": options,
		"fieldConfig": map[string]any{"defaults": defaults, "overrides": []any{}},
	}
}

func variable(v Variable, ds map[string]string) map[string]any {
	m := map[string]any{
		"name": v.Name, "label": v.Label, "type": "query", "datasource": ds,
		"query":      map[string]any{"query": v.Query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
		"definition": v.Query, "refresh": 2, "sort": 1,
		"includeAll": v.All, "multi": v.All,
	}
	if v.All {
		m["allValue"] = ".*"
		m["current"] = map[string]any{"text": "All", "value": "$__all"}
	} else {
		m["current"] = map[string]any{"text": v.Default, "value": v.Default}
	}
	return m
}
