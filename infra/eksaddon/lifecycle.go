package eksaddon

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Release is one EKS minor's place in the Amazon EKS Kubernetes release
// calendar: standard support for 14 months after its release on EKS, then
// extended support for 12 more, at a higher price per cluster hour; past
// that, EKS auto-upgrades the cluster (Amazon EKS User Guide, "Understand
// the Kubernetes version lifecycle on EKS",
// https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html,
// "Amazon EKS Kubernetes release calendar").
type Release struct {
	Minor         string
	Released      time.Time // Amazon EKS release
	EndOfStandard time.Time // end of standard support
	EndOfExtended time.Time // end of extended support
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// calendar is the EKS release calendar's rows for the minors the table
// knows or knew, as the page lists them (read 2026-12-06).
var calendar = map[string]Release{
	"1.29": {"1.29", day("2024-01-23"), day("2025-03-23"), day("2026-03-23")},
	"1.30": {"1.30", day("2024-05-23"), day("2025-07-23"), day("2026-07-23")},
	"1.31": {"1.31", day("2024-09-26"), day("2025-11-26"), day("2026-11-26")},
	"1.32": {"1.32", day("2025-01-23"), day("2026-03-23"), day("2027-03-23")},
	"1.33": {"1.33", day("2025-05-29"), day("2026-07-29"), day("2027-07-29")},
	"1.34": {"1.34", day("2025-10-02"), day("2026-12-02"), day("2027-12-02")},
	"1.35": {"1.35", day("2026-01-27"), day("2027-03-27"), day("2028-03-27")},
}

// Calendar is a copy of the calendar's rows.
func Calendar() map[string]Release { return maps.Clone(calendar) }

// Support is where a minor stands on a day.
type Support int

const (
	Standard Support = iota
	Extended
	Ended
)

func (s Support) String() string {
	return [...]string{"standard support", "extended support", "no support"}[s]
}

// On is the release's support on a day. The calendar's dates are the last
// day of each period.
func (r Release) On(t time.Time) Support {
	d := t.UTC().Truncate(24 * time.Hour)
	switch {
	case !d.After(r.EndOfStandard):
		return Standard
	case !d.After(r.EndOfExtended):
		return Extended
	}
	return Ended
}

// ExtendedSupportCost is what a cluster in extended support costs, against
// standard support's $0.10 per cluster hour (Amazon EKS pricing,
// https://aws.amazon.com/eks/pricing/).
const ExtendedSupportCost = "$0.60 per cluster hour instead of $0.10"

// Supported checks eksVersion on a day: a minor past its end of extended
// support is refused with that date (EKS would auto-upgrade the cluster
// under the stack); one in extended support is accepted with a note saying
// until when and at what cost; one the table has no row for is refused.
func Supported(eksVersion string, on time.Time) (note string, err error) {
	r, ok := calendar[eksVersion]
	if !ok {
		return "", fmt.Errorf("EKS %q is not in the release calendar infra/eksaddon knows: want one of %s", eksVersion, strings.Join(Minors(), ", "))
	}
	switch r.On(on) {
	case Ended:
		return "", fmt.Errorf("EKS %s reached its end of extended support on %s (Amazon EKS release calendar); EKS auto-upgrades such a cluster: want %s",
			eksVersion, r.EndOfExtended.Format(time.DateOnly), NewestStandard(on))
	case Extended:
		note = fmt.Sprintf("EKS %s left standard support on %s and is in extended support until %s, at %s; %s is in standard support",
			eksVersion, r.EndOfStandard.Format(time.DateOnly), r.EndOfExtended.Format(time.DateOnly), ExtendedSupportCost, NewestStandard(on))
	}
	if _, ok := versions[eksVersion]; !ok {
		return "", fmt.Errorf("no add-on versions for EKS %q: want one of %s", eksVersion, strings.Join(Minors(), ", "))
	}
	return note, nil
}

// NewestStandard is the newest minor of the table in standard support on a
// day, "" if none is.
func NewestStandard(on time.Time) string {
	minors := Minors()
	slices.SortFunc(minors, compareMinors)
	for _, m := range slices.Backward(minors) {
		if r, ok := calendar[m]; ok && r.On(on) == Standard {
			return m
		}
	}
	return ""
}

// compareMinors orders "1.9" before "1.10".
func compareMinors(a, b string) int {
	var am, an, bm, bn int
	fmt.Sscanf(a, "%d.%d", &am, &an)
	fmt.Sscanf(b, "%d.%d", &bm, &bn)
	if am != bm {
		return am - bm
	}
	return an - bn
}
