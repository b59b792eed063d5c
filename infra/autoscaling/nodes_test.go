package autoscaling

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// rule is one ClusterRole rule: its API groups, resources and verbs.
type rule struct {
	groups, resources, verbs []string
}

// chartRBAC is what a released cluster-autoscaler chart states: its
// appVersion and the ClusterRole rules (rendered for cloudProvider aws) that
// grant list and watch on what the autoscaler watches. Recorded by hand from
// the chart's tag in github.com/kubernetes/autoscaler: the Go module proxy
// serves no module holding the chart (k8s.io/autoscaler/cluster-autoscaler,
// whose directory holds it since upstream commit 7ececfd, answers 403), and
// the Helm repository is off the network the tests run on.
type chartRBAC struct {
	appVersion string
	rules      []rule
}

var charts = map[string]chartRBAC{
	// https://github.com/kubernetes/autoscaler/blob/cluster-autoscaler-chart-9.43.1/charts/cluster-autoscaler/templates/clusterrole.yaml
	// (commit 2120a0beb52d6fc1a0b3d2774f1538f5d70347db; Chart.yaml beside
	// it: appVersion 1.31.0).
	"9.43.1": {appVersion: "1.31.0", rules: []rule{
		{[]string{""}, []string{"nodes"}, []string{"watch", "list", "create", "delete", "get", "update"}},
		{[]string{""}, []string{"namespaces", "pods", "services", "replicationcontrollers", "persistentvolumeclaims", "persistentvolumes"}, []string{"watch", "list", "get"}},
		{[]string{"batch"}, []string{"jobs", "cronjobs"}, []string{"watch", "list", "get"}},
		{[]string{"policy"}, []string{"poddisruptionbudgets"}, []string{"watch", "list"}},
		{[]string{"apps"}, []string{"daemonsets", "replicasets", "statefulsets"}, []string{"watch", "list", "get"}},
		{[]string{"storage.k8s.io"}, []string{"storageclasses", "csinodes", "csidrivers", "csistoragecapacities"}, []string{"watch", "list", "get"}},
	}},
	// https://github.com/kubernetes/autoscaler/blob/cluster-autoscaler-chart-9.55.1/cluster-autoscaler/charts/cluster-autoscaler/templates/clusterrole.yaml
	// (commit 4063e80431285255a3c8c0f03bad4a2ef581048a; Chart.yaml beside
	// it: appVersion 1.35.0).
	"9.55.1": {appVersion: "1.35.0", rules: []rule{
		{[]string{""}, []string{"nodes"}, []string{"watch", "list", "get", "update"}},
		{[]string{"resource.k8s.io"}, []string{"resourceslices", "deviceclasses", "resourceclaims"}, []string{"watch", "list", "get"}},
		{[]string{""}, []string{"namespaces", "pods", "services", "replicationcontrollers", "persistentvolumeclaims", "persistentvolumes"}, []string{"watch", "list", "get"}},
		{[]string{"batch"}, []string{"jobs", "cronjobs"}, []string{"watch", "list", "get"}},
		{[]string{"policy"}, []string{"poddisruptionbudgets"}, []string{"watch", "list"}},
		{[]string{"apps"}, []string{"daemonsets", "replicasets", "statefulsets"}, []string{"watch", "list", "get"}},
		{[]string{"storage.k8s.io"}, []string{"storageclasses", "csinodes", "csidrivers", "csistoragecapacities", "volumeattachments"}, []string{"watch", "list", "get"}},
	}},
}

// resource is an API group and resource, as a ClusterRole names them.
type resource struct{ group, name string }

func (r resource) String() string { return r.group + "/" + r.name }

// watched is what a Cluster Autoscaler image of this minor lists and watches
// with the flags the stack gives it (no ProvisioningRequests, no capacity
// buffers), each an informer that must sync before it acts:
//   - always: the listers of cluster-autoscaler/utils/kubernetes/listers.go
//     and the kube-scheduler plugins it runs to simulate scheduling;
//   - from 1.32: VolumeAttachments, which the scheduler's NodeVolumeLimits
//     plugin lists from Kubernetes 1.32 (pkg/scheduler/framework/plugins/
//     nodevolumelimits/csi.go): kubernetes/autoscaler#7663, granted by the
//     chart from 9.46.3 (kubernetes/autoscaler#7904);
//   - from 1.35: the DRA objects, as 1.35 locks
//     --enable-dynamic-resource-allocation to true
//     (kubernetes/autoscaler#8827, granted by the chart from 9.54.0).
func watched(minor int) []resource {
	r := []resource{
		{"", "nodes"}, {"", "pods"}, {"", "namespaces"}, {"", "services"}, {"", "replicationcontrollers"},
		{"", "persistentvolumes"}, {"", "persistentvolumeclaims"},
		{"apps", "daemonsets"}, {"apps", "replicasets"}, {"apps", "statefulsets"},
		{"batch", "jobs"}, {"policy", "poddisruptionbudgets"},
		{"storage.k8s.io", "storageclasses"}, {"storage.k8s.io", "csinodes"}, {"storage.k8s.io", "csidrivers"}, {"storage.k8s.io", "csistoragecapacities"},
	}
	if minor >= 32 {
		r = append(r, resource{"storage.k8s.io", "volumeattachments"})
	}
	if minor >= 35 {
		r = append(r, resource{"resource.k8s.io", "resourceslices"}, resource{"resource.k8s.io", "deviceclasses"}, resource{"resource.k8s.io", "resourceclaims"})
	}
	return r
}

// grants reports whether one of the rules allows verb on r.
func (c chartRBAC) grants(r resource, verb string) bool {
	return slices.ContainsFunc(c.rules, func(ru rule) bool {
		return slices.Contains(ru.groups, r.group) && slices.Contains(ru.resources, r.name) && slices.Contains(ru.verbs, verb)
	})
}

// minor is the minor of a Kubernetes-style version, "v1.33.0" or "1.33.0".
func minor(version string) (int, error) {
	var m int
	if _, err := fmt.Sscanf(strings.TrimPrefix(version, "v"), "1.%d", &m); err != nil {
		return 0, fmt.Errorf("version %q: want 1.<minor>[.<patch>], with or without v: %w", version, err)
	}
	return m, nil
}

// unfit lists why chart cannot run image: an informer the image starts that
// its ClusterRole does not let list and watch (the autoscaler then waits for
// it forever, Ready but never scaling: kubernetes/autoscaler#7663), or an
// image newer than the chart's appVersion.
func unfit(t *testing.T, chart chartRBAC, image string) []string {
	t.Helper()
	im, err := minor(image)
	if err != nil {
		t.Fatalf("image: %v", err)
	}
	app, err := minor(chart.appVersion)
	if err != nil {
		t.Fatalf("chart appVersion: %v", err)
	}
	var why []string
	// The chart is written for its appVersion's autoscaler; the stack
	// overrides the image per EKS minor, which may be older (its informers
	// are checked below) but not newer, whose informers the chart predates.
	if im > app {
		why = append(why, fmt.Sprintf("image %s is newer than the chart's appVersion %s", image, chart.appVersion))
	}
	for _, r := range watched(im) {
		for _, verb := range []string{"list", "watch"} {
			if !chart.grants(r, verb) {
				why = append(why, fmt.Sprintf("no %s on %s", verb, r))
			}
		}
	}
	return why
}

// The pinned chart's ClusterRole lets every image of AutoscalerImages list
// and watch what it watches: with chart 9.43.1, images from 1.32 wait for a
// VolumeAttachment informer they may not list, and never scale
// (kubernetes/autoscaler#7663).
func TestAutoscalerChartGrantsWhatEveryImageWatches(t *testing.T) {
	chart, ok := charts[autoscalerChart]
	if !ok {
		t.Fatalf("chart %s: no record of its appVersion and ClusterRole; add it from its tag cluster-autoscaler-chart-%s", autoscalerChart, autoscalerChart)
	}
	for _, eks := range slices.Sorted(maps.Keys(AutoscalerImages)) {
		image := AutoscalerImages[eks]
		if why := unfit(t, chart, image); len(why) > 0 {
			t.Errorf("EKS %s: chart %s cannot run Cluster Autoscaler %s: %s", eks, autoscalerChart, image, strings.Join(why, "; "))
		}
	}
}

// The check catches the issue's case: chart 9.43.1 with image v1.33.0 lacks
// list and watch on VolumeAttachments (kubernetes/autoscaler#7663).
func TestAutoscalerChartCheckCatchesIssue7663(t *testing.T) {
	why := unfit(t, charts["9.43.1"], "v1.33.0")
	for _, want := range []string{"no list on storage.k8s.io/volumeattachments", "no watch on storage.k8s.io/volumeattachments"} {
		if !slices.Contains(why, want) {
			t.Errorf("chart 9.43.1 with v1.33.0: %v, want %q", why, want)
		}
	}
}
