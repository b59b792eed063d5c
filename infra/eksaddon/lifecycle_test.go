package eksaddon

import (
	"strings"
	"testing"
	"time"
)

// checked is the day the calendar was read from the page.
var checked = day("2026-12-06")

// The Amazon EKS Kubernetes release calendar (Amazon EKS User Guide,
// "Understand the Kubernetes version lifecycle on EKS",
// https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html):
// a minor is in standard support for 14 months after its Amazon EKS
// release, then in extended support for 12 more. The rows as the page
// lists them, and where each minor stood on the day they were read.
func TestCalendarIsTheEKSReleaseCalendar(t *testing.T) {
	for _, tc := range []struct {
		minor                              string
		released, endStandard, endExtended string
		on2026_12_06                       Support
	}{
		{"1.29", "2024-01-23", "2025-03-23", "2026-03-23", Ended},
		{"1.30", "2024-05-23", "2025-07-23", "2026-07-23", Ended},
		{"1.31", "2024-09-26", "2025-11-26", "2026-11-26", Ended},
		{"1.32", "2025-01-23", "2026-03-23", "2027-03-23", Extended},
		{"1.33", "2025-05-29", "2026-07-29", "2027-07-29", Extended},
		{"1.34", "2025-10-02", "2026-12-02", "2027-12-02", Extended},
		{"1.35", "2026-01-27", "2027-03-27", "2028-03-27", Standard},
	} {
		r, ok := Calendar()[tc.minor]
		if !ok {
			t.Errorf("EKS %s: not in the calendar", tc.minor)
			continue
		}
		if r.Released != day(tc.released) || r.EndOfStandard != day(tc.endStandard) || r.EndOfExtended != day(tc.endExtended) {
			t.Errorf("EKS %s: %v, want released %s, standard to %s, extended to %s", tc.minor, r, tc.released, tc.endStandard, tc.endExtended)
		}
		if r.Released.AddDate(0, 14, 0) != r.EndOfStandard || r.EndOfStandard.AddDate(0, 12, 0) != r.EndOfExtended {
			t.Errorf("EKS %s: not 14 months of standard and 12 of extended support", tc.minor)
		}
		if got := r.On(checked); got != tc.on2026_12_06 {
			t.Errorf("EKS %s on 2026-12-06: %v, want %v", tc.minor, got, tc.on2026_12_06)
		}
	}
	// The dates are the last day of each period.
	r := Calendar()["1.35"]
	for _, tc := range []struct {
		on   string
		want Support
	}{{"2027-03-27", Standard}, {"2027-03-28", Extended}, {"2028-03-27", Extended}, {"2028-03-28", Ended}} {
		if got := r.On(day(tc.on).Add(23 * time.Hour)); got != tc.want {
			t.Errorf("EKS 1.35 on %s: %v, want %v", tc.on, got, tc.want)
		}
	}
}

// A minor past its end of extended support is refused with the date; one
// in extended support is accepted with a note of its end and cost; the
// newest minor in standard support is the one to move to.
func TestSupportedRefusesWhatEKSNoLongerSupports(t *testing.T) {
	for _, tc := range []struct {
		minor   string
		refused []string // in the error
		note    []string // in the note; none for standard support
	}{
		{"1.29", []string{"end of extended support on 2026-03-23", "want 1.35"}, nil},
		{"1.31", []string{"end of extended support on 2026-11-26", "want 1.35"}, nil},
		{"1.32", nil, []string{"2026-03-23", "until 2027-03-23", ExtendedSupportCost}},
		{"1.34", nil, []string{"2026-12-02", "until 2027-12-02", ExtendedSupportCost, "1.35 is in standard support"}},
		{"1.35", nil, nil},
		{"1.36", []string{"1.32, 1.33, 1.34, 1.35"}, nil},
		{"1.28", []string{"1.32, 1.33, 1.34, 1.35"}, nil},
	} {
		note, err := Supported(tc.minor, checked)
		switch {
		case tc.refused != nil:
			for _, s := range tc.refused {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("EKS %s: err %v, want it refused saying %q", tc.minor, err, s)
				}
			}
		case err != nil:
			t.Errorf("EKS %s refused: %v", tc.minor, err)
		case tc.note == nil && note != "":
			t.Errorf("EKS %s: note %q, want none in standard support", tc.minor, note)
		}
		for _, s := range tc.note {
			if !strings.Contains(note, s) {
				t.Errorf("EKS %s: note %q, want it to say %q", tc.minor, note, s)
			}
		}
	}
	if got := NewestStandard(checked); got != "1.35" {
		t.Errorf("newest minor in standard support on 2026-12-06: %s, want 1.35", got)
	}
	if got := NewestStandard(day("2026-11-30")); got != "1.35" {
		t.Errorf("newest minor in standard support on 2026-11-30: %s, want 1.35", got)
	}
}

// Every row of the add-on table is a minor of the calendar that EKS still
// supported when the table was last updated: a row for an ended minor is
// dead, one without dates cannot be checked.
func TestEveryRowIsInTheCalendarAndSupported(t *testing.T) {
	for _, minor := range Minors() {
		r, ok := Calendar()[minor]
		if !ok {
			t.Errorf("EKS %s has add-on versions but no calendar dates", minor)
			continue
		}
		if r.On(checked) == Ended {
			t.Errorf("EKS %s has add-on versions but ended on %s", minor, r.EndOfExtended.Format(time.DateOnly))
		}
	}
	if got := strings.Join(Minors(), ","); got != "1.32,1.33,1.34,1.35" {
		t.Errorf("minors %s, want 1.32 to 1.35 in order", got)
	}
}
