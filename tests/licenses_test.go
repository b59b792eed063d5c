package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The repository is Apache-2.0 (../LICENSE) on the claim that every module
// the product links is under a permissive licence. TestDependencyLicenses
// checks that claim against the module cache: each module linked into the
// chat server's binaries (app/), the Pulumi program (infra/) or the Pulumi
// plugin (provider/, released as archives) must carry a
// licence file whose text is one of permissiveLicenses, or be listed in
// allowedExceptions with the reason it is acceptable. It reads the licence
// files at each module's root only. Not checked: modules only tests link
// (terratest brings MPL-2.0 ones), and the separate modules under tools/,
// which build test and e2e tooling that is not shipped.

// permissiveLicenses are the licences that need nothing beyond keeping the
// notices.
var permissiveLicenses = []string{"Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC"}

// allowedExceptions are the modules allowed although their licence is
// outside permissiveLicenses or they ship no licence file, keyed by module
// path: the licence the test must find ("" for no licence file), and why the
// module is acceptable. None of them is linked into the chat server's
// binaries; all come with the Pulumi SDK, so they are in the Pulumi program
// (infra/) only, which operators build and run themselves.
//
// MPL-2.0 is weak (file-level) copyleft: linking an unmodified module is
// fine, provided its source stays available (it is, from the module proxy)
// and its notices are kept. Modifying one of its files would oblige us to
// publish that file under the MPL. None of these modules is vendored or
// patched here; keep it that way.
var allowedExceptions = map[string]struct{ license, reason string }{
	"github.com/hashicorp/errwrap": {"MPL-2.0",
		"weak copyleft, linked unmodified: the Pulumi SDK uses github.com/hashicorp/go-multierror, which uses it"},
	"github.com/hashicorp/go-multierror": {"MPL-2.0",
		"weak copyleft, linked unmodified: used by the Pulumi SDK (github.com/pulumi/pulumi/sdk/v3/go/pulumi)"},
	"github.com/hashicorp/go-version": {"MPL-2.0",
		"weak copyleft, linked unmodified: used by go.opentelemetry.io/collector/featuregate, which the Pulumi SDK links"},
	"github.com/hashicorp/hcl/v2": {"MPL-2.0",
		"weak copyleft, linked unmodified: used by the Pulumi SDK (sdk/v3/go/common/resource/plugin, common/esc)"},
	"github.com/mattn/go-localereader": {"",
		"no licence file in v0.0.1, its only version; its README.md says \"MIT\" under License. " +
			"Linked through the Pulumi SDK's github.com/charmbracelet/bubbletea. " +
			"Needed: a licence file upstream (mattn/go-localereader) and a version that ships it"},
}

// goosesLinked are the systems the modules are listed for: the release
// platforms' linux, and the systems an operator may run `pulumi up` on.
var goosesLinked = []string{"linux", "darwin", "windows"}

type module struct {
	Path, Version, Dir string
	Main               bool
	Replace            *module
}

func TestDependencyLicenses(t *testing.T) {
	mods := linkedModules(t)
	if len(mods) == 0 {
		t.Fatal("go list found no modules outside the standard library")
	}
	byLicense := map[string][]string{}
	seenException := map[string]bool{}
	for _, m := range mods {
		dir := m.Dir
		if m.Replace != nil {
			dir = m.Replace.Dir
		}
		licenses, files, err := moduleLicenses(dir)
		if err != nil {
			t.Errorf("%s@%s: %v", m.Path, m.Version, err)
			continue
		}
		exc, excepted := allowedExceptions[m.Path]
		if len(files) == 0 {
			if excepted && exc.license == "" {
				seenException[m.Path] = true
				t.Logf("allowed: %s@%s has no licence file: %s", m.Path, m.Version, exc.reason)
				continue
			}
			t.Errorf("%s@%s: no LICENSE, COPYING or NOTICE file in %s: the module's licence is unknown", m.Path, m.Version, dir)
			continue
		}
		if len(licenses) == 0 {
			t.Errorf("%s@%s: %v name no licence this test recognises: read them, then classify here", m.Path, m.Version, files)
			continue
		}
		key := strings.Join(licenses, " + ")
		byLicense[key] = append(byLicense[key], m.Path)
		var other []string
		for _, l := range licenses {
			if !slices.Contains(permissiveLicenses, l) {
				other = append(other, l)
			}
		}
		if len(other) == 0 {
			continue
		}
		if excepted && exc.license == key {
			seenException[m.Path] = true
			t.Logf("allowed: %s@%s is %s: %s", m.Path, m.Version, key, exc.reason)
			continue
		}
		t.Errorf("%s@%s is %s (%v): not Apache-2.0, MIT, BSD or ISC; drop the module, or add it to allowedExceptions with the reason it is acceptable", m.Path, m.Version, key, files)
	}
	for path := range allowedExceptions {
		if !seenException[path] {
			t.Errorf("allowedExceptions lists %s as %q, but it is no longer linked or its licence changed: update or remove the entry", path, allowedExceptions[path].license)
		}
	}
	keys := make([]string, 0, len(byLicense))
	for k := range byLicense {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%s: %d modules: %s", k, len(byLicense[k]), strings.Join(byLicense[k], " "))
	}
}

// linkedModules are the modules, other than this one and the standard
// library, of the packages under app/ and infra/ (tests excluded), for each
// of goosesLinked.
func linkedModules(t *testing.T) []module {
	t.Helper()
	seen := map[string]module{}
	for _, goos := range goosesLinked {
		cmd := exec.Command("go", "list", "-deps", "-json=Module", "./app/...", "./infra/...", "./provider/...")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("GOOS=%s go list: %v\n%s", goos, err, stderr.Bytes())
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var p struct{ Module *module }
			if err := dec.Decode(&p); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("GOOS=%s go list: %v", goos, err)
			}
			if p.Module == nil || p.Module.Main {
				continue
			}
			seen[p.Module.Path+"@"+p.Module.Version] = *p.Module
		}
	}
	mods := make([]module, 0, len(seen))
	for _, m := range seen {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods
}

var licenseFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice|unlicense)([-._].*)?$`)

// moduleLicenses classifies the licence files at the root of a module's
// directory. A file may hold several licences (a dual licence, or the
// licences of code copied into the module); each one found is returned.
func moduleLicenses(dir string) (licenses, files []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if e.IsDir() || !licenseFile.MatchString(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, e.Name())
		for _, l := range classify(string(b)) {
			if !slices.Contains(licenses, l) {
				licenses = append(licenses, l)
			}
		}
	}
	sort.Strings(licenses)
	return licenses, files, nil
}

var space = regexp.MustCompile(`[\s*#/>]+`)

// classify names the licences whose characteristic wording the text holds.
// A NOTICE file that names no licence yields nothing.
func classify(text string) []string {
	s := strings.ToLower(space.ReplaceAllString(text, " "))
	has := func(phrases ...string) bool {
		for _, p := range phrases {
			if strings.Contains(s, p) {
				return true
			}
		}
		return false
	}
	var out []string
	if has("apache license version 2.0", "apache license, version 2.0", "licensed under the apache license") {
		out = append(out, "Apache-2.0")
	}
	if has("permission is hereby granted, free of charge, to any person obtaining a copy") {
		out = append(out, "MIT")
	}
	if has("redistribution and use in source and binary forms") {
		if has("neither the name", "names of its contributors", "name of the copyright holder nor", "names of the copyright holders nor") {
			out = append(out, "BSD-3-Clause")
		} else {
			out = append(out, "BSD-2-Clause")
		}
	}
	if has("permission to use, copy, modify, and/or distribute this software for any purpose", "permission to use, copy, modify, and distribute this software for any purpose") {
		out = append(out, "ISC")
	}
	if has("mozilla public license version 2.0", "mozilla public license, version 2.0", "mozilla public license, v. 2.0") {
		out = append(out, "MPL-2.0")
	}
	// The MPL names the GNU licences as "Secondary Licenses"; only a text
	// that is not the MPL counts as one of them.
	if !slices.Contains(out, "MPL-2.0") && has("gnu general public license", "gnu lesser general public license", "gnu affero general public license") {
		out = append(out, "GPL-family")
	}
	if has("this is free and unencumbered software released into the public domain") {
		out = append(out, "Unlicense")
	}
	if has("creative commons") {
		out = append(out, "CC")
	}
	return out
}

// apache2SHA256 is the SHA-256 of the Apache License 2.0 as the ASF
// publishes it (https://www.apache.org/licenses/LICENSE-2.0.txt).
const apache2SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"

func TestLicenseIsApache2Verbatim(t *testing.T) {
	b, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != apache2SHA256 {
		t.Errorf("../LICENSE has SHA-256 %s, want %s: the Apache License 2.0 text unchanged (copyright notices go in the files, not in LICENSE)", got, apache2SHA256)
	}
	if got := classify(string(b)); !slices.Equal(got, []string{"Apache-2.0"}) {
		t.Errorf("classify(../LICENSE) = %v, want [Apache-2.0]", got)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string
	}{
		{"Mozilla Public License Version 2.0\n...\n\"Secondary License\" means either the GNU General Public License, Version 2.0", []string{"MPL-2.0"}},
		{"This program is free software; you can redistribute it and/or modify it under the terms of the GNU General Public License", []string{"GPL-family"}},
		{"Redistribution and use in source and binary forms, with or without\nmodification, are permitted ... * Neither the name of Google Inc. nor", []string{"BSD-3-Clause"}},
		{"Redistribution and use in source and binary forms, with or without modification, are permitted", []string{"BSD-2-Clause"}},
		{"Permission is hereby granted, free of charge, to any person obtaining a copy", []string{"MIT"}},
		{"Copyright 2020 Someone. All rights reserved.", nil},
	} {
		if got := classify(c.text); !slices.Equal(got, c.want) {
			t.Errorf("classify(%.40q...) = %v, want %v", c.text, got, c.want)
		}
	}
}
