// Package grafana writes Grafana documents: an importable dashboard from a
// list of rows and panels, and Grafana-managed alert rules from a Prometheus
// rule file. It knows Grafana's formats, not Switchboard's metrics.
//
// Every Grafana object is built with the Grafana Foundation SDK
// (github.com/grafana/grafana-foundation-sdk/go, Apache-2.0), whose Go types
// are generated from Grafana's own schemas: a field the schema renames or
// drops fails to compile here instead of being ignored by Grafana on import.
// Grafana itself (AGPL) is neither imported nor run.
package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// SchemaVersion is the dashboard schema the SDK's types describe (42 in
// v0.0.22, Grafana 12). Grafana migrates an older schema on load and loads a
// newer one as it is, so Grafana 11 imports it too.
var SchemaVersion = int(dashboard.NewDashboard().SchemaVersion)

// Input is the name of the datasource input that "Import dashboard" asks
// for; every query refers to it as ${DS_PROMETHEUS}.
const Input = "DS_PROMETHEUS"

// Kinds of panel: the panel plugin ids of the SDK's panel builders.
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

// datasource is the Prometheus datasource every panel and query names: the
// import input, which Grafana (or the sidecar's ConfigMap) fills in.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${" + Input + "}")}
}

// Build builds the dashboard with the SDK's builders: its typed model,
// without the import envelope (__inputs, __requires) Render adds.
func Build(d Dashboard) (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder(d.Title).
		Uid(d.UID).
		Description(d.Description).
		Tags(d.Tags).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Version(1)
	for _, v := range d.Variables {
		b.WithVariable(variable(v))
	}
	var id, y uint32
	for _, row := range d.Rows {
		id++
		// An expanded row: its panels follow it at the top level (Grafana
		// strips the panels of a row that is not collapsed).
		b.WithRow(dashboard.NewRowBuilder(row.Title).Id(id).GridPos(dashboard.GridPos{X: 0, Y: y, W: 24, H: 1}))
		y++
		var x uint32
		for _, p := range row.Panels {
			if p.Description == "" || p.Unit == "" || len(p.Queries) == 0 {
				return dashboard.Dashboard{}, fmt.Errorf("panel %q: want a description, a unit and at least one query", p.Title)
			}
			w := uint32(p.Width)
			if w == 0 {
				w = 8
			}
			if x+w > 24 {
				x, y = 0, y+panelHeight
			}
			id++
			pb, err := panel(id, p, dashboard.GridPos{X: x, Y: y, W: w, H: panelHeight})
			if err != nil {
				return dashboard.Dashboard{}, err
			}
			b.WithPanel(pb)
			x += w
		}
		y += panelHeight
	}
	model, err := b.Build()
	if err != nil {
		return dashboard.Dashboard{}, fmt.Errorf("build dashboard %s: %w", d.UID, err)
	}
	return model, nil
}

// Render writes the dashboard as Grafana's JSON model, ready for "Import
// dashboard" with the Prometheus datasource as its one input.
func Render(d Dashboard) ([]byte, error) {
	model, err := Build(d)
	if err != nil {
		return nil, err
	}
	// The SDK's types are the dashboard model; the import envelope
	// (__inputs, __requires) is what Grafana's "Export for sharing
	// externally" adds around it, and it has no SDK type.
	raw, err := json.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("render dashboard %s: %w", d.UID, err)
	}
	out := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("render dashboard %s: %w", d.UID, err)
	}
	out["__inputs"] = []any{map[string]string{
		"name": Input, "label": "Prometheus", "type": "datasource",
		"description": "The Prometheus that scrapes the chat instances",
		"pluginId":    "prometheus", "pluginName": "Prometheus",
	}}
	out["__requires"] = requires(d)
	// Written from a map, the keys come out sorted, and the encoder keeps
	// PromQL's > and < readable (json.Marshal escapes them).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("render dashboard %s: %w", d.UID, err)
	}
	return buf.Bytes(), nil
}

// Envelope are the top-level keys Render adds around the SDK's dashboard
// model: an import wrapper, not part of the dashboard schema.
var Envelope = []string{"__inputs", "__requires"}

func requires(d Dashboard) []any {
	kinds := map[string]bool{}
	for _, r := range d.Rows {
		for _, p := range r.Panels {
			kinds[p.Kind] = true
		}
	}
	out := []any{
		map[string]string{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "11.0.0"},
		map[string]string{"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
	}
	for _, k := range []string{Heatmap, Stat, TimeSeries} {
		if kinds[k] {
			out = append(out, map[string]string{"type": "panel", "id": k, "name": k, "version": ""})
		}
	}
	return out
}

// panelBuilder is what the SDK's panel builders (timeseries, stat,
// heatmap) have in common.
type panelBuilder[B any] interface {
	cog.Builder[dashboard.Panel]
	Id(uint32) B
	Title(string) B
	Description(string) B
	Datasource(common.DataSourceRef) B
	GridPos(dashboard.GridPos) B
	Unit(string) B
	WithTarget(cog.Builder[variants.Dataquery]) B
}

func withCommon[B panelBuilder[B]](b B, id uint32, p Panel, pos dashboard.GridPos, format *prometheus.PromQueryFormat) B {
	b.Id(id).Title(p.Title).Description(p.Description).Datasource(datasource()).GridPos(pos).Unit(p.Unit)
	for i, q := range p.Queries {
		t := prometheus.NewDataqueryBuilder().
			RefId(string(rune('A' + i))).
			Datasource(datasource()).
			Expr(q.Expr).
			LegendFormat(q.Legend).
			Range().
			EditorMode(prometheus.QueryEditorModeCode)
		if format != nil {
			t.Format(*format)
		}
		b.WithTarget(t)
	}
	return b
}

func panel(id uint32, p Panel, pos dashboard.GridPos) (cog.Builder[dashboard.Panel], error) {
	switch p.Kind {
	case TimeSeries:
		return withCommon(timeseries.NewPanelBuilder(), id, p, pos, nil).
			Min(0).
			FillOpacity(10).
			ShowPoints(common.VisibilityModeNever).
			Legend(common.NewVizLegendOptionsBuilder().
				DisplayMode(common.LegendDisplayModeList).
				Placement(common.LegendPlacementBottom).
				ShowLegend(true)).
			Tooltip(common.NewVizTooltipOptionsBuilder().
				Mode(common.TooltipDisplayModeMulti).
				Sort(common.SortOrderDescending)), nil
	case Stat:
		return withCommon(stat.NewPanelBuilder(), id, p, pos, nil).
			ReduceOptions(common.NewReduceDataOptionsBuilder().
				Calcs([]string{"lastNotNull"}).
				Fields("").
				Values(false)).
			ColorMode(common.BigValueColorModeValue).
			GraphMode(common.BigValueGraphModeArea).
			Orientation(common.VizOrientationAuto), nil
	case Heatmap:
		// The buckets come from the histogram: Grafana must not re-bucket them.
		format := prometheus.PromQueryFormatHeatmap
		return withCommon(heatmap.NewPanelBuilder(), id, p, pos, &format).
			Calculate(false).
			YAxis(heatmap.NewYAxisConfigBuilder().Unit(p.Unit)).
			CellGap(1).
			// Color replaces the SDK's default color options whole: restate
			// its fill and exponent, used by the opacity mode.
			Color(heatmap.NewHeatmapColorOptionsBuilder().
				Mode(heatmap.HeatmapColorModeScheme).
				Scheme("Oranges").
				Steps(64).
				Fill("dark-orange").
				Exponent(0.5)).
			Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle)), nil
	}
	return nil, fmt.Errorf("panel %q: kind %q: want %s, %s or %s", p.Title, p.Kind, TimeSeries, Stat, Heatmap)
}

func variable(v Variable) *dashboard.QueryVariableBuilder {
	b := dashboard.NewQueryVariableBuilder(v.Name).
		Label(v.Label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{Map: map[string]any{
			"query": v.Query, "refId": "PrometheusVariableQueryEditor-VariableQuery",
		}}).
		Definition(v.Query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		IncludeAll(v.All).
		Multi(v.All)
	if v.All {
		b.AllValue(".*").Current(option("All", "$__all"))
	} else {
		b.Current(option(v.Default, v.Default))
	}
	return b
}

func option(text, value string) dashboard.VariableOption {
	return dashboard.VariableOption{
		Text:  dashboard.StringOrArrayOfString{String: &text},
		Value: dashboard.StringOrArrayOfString{String: &value},
	}
}
