// Package layers_test keeps coffer's package layering true. It asks the
// go tool for every package of the module and its imports (go list -deps
// -json ./...) and parses the module's Go files, and fails, naming the
// import chain or the file and line, when one of these rules is broken:
//
//  1. Nothing under engine/ depends on cmd/..., fusefs, s3io, the AWS SDK
//     (github.com/aws/...) or go-fuse, directly or through another package
//     (non-test code); engine's tests import none of them either. The
//     engine is the format and its algorithms; the adapters sit on top.
//  2. cache imports nothing of coffer: it knows bytes, not formats.
//  3. fusefs depends on neither s3io nor the AWS SDK.
//  4. Only s3io imports the AWS SDK (its tests too), scripts included: a
//     script that needs S3 goes through s3io (see scripts/s3seed).
//  5. Only fusefs imports go-fuse; cmd/coffer mounts through fusefs
//     (fusefs.Root, fusefs.Mount, fusefs.Unmount).
//  6. Inside the engine, each package imports only the coffer packages its
//     row of engineLayers lists, and a row lists only packages of lower
//     layers: no upward import, no sideways import between drivers, no
//     cycle.
//  7. No Go file outside engine/store (tests included) spells an object
//     name prefix ("packs/d/", "packs/m/", "index/", "snapshots/",
//     "locks/") in a string literal: name objects with store.ObjectName,
//     store.Prefix and store.ParseObjectName, so that the layout lives in
//     engine/store/layout.go alone.
//
// When it fails: move the code to the layer that owns it rather than
// widening a rule. A new engine package needs a row in engineLayers (its
// layer and what it imports); a new import inside the engine needs its
// row changed, which the review then sees.
package layers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// module is the module's path; packages are named relative to it below
// ("engine/store", "cmd/coffer").
const module = "github.com/coffer-backup/coffer"

// The engine's layers, bottom up.
const (
	layerBase        = iota // imports nothing of coffer: cache, store, crypto, keymap
	layerCodec              // one base package each: format, object, the store's decorators and suite
	layerStructure          // tree, index: over the codecs
	layerRepository         // engine: the repository
	layerDriver             // backup, restore, check, repair: the repository's API and its types
	layerTestSupport        // enginetest: stores for tests, built with the drivers
)

var layerNames = []string{"base", "codec", "structure", "repository", "driver", "test support"}

// driverMay is what a driver may import: the repository and the layers
// below it (whose types the repository's API uses), never another driver,
// never the store's decorators (cmd/coffer composes those).
var driverMay = []string{"engine", "engine/store", "engine/crypto", "engine/format", "engine/tree", "engine/index",
	"engine/object", "engine/keymap", "engine/lease", "internal/pipeline", "internal/bufpool"}

// engineLayers: every engine package (and cache, which engine/object
// uses, and internal/pipeline, the backup driver's), its layer, and the coffer packages its non-test code may import.
// Derived from the imports of the tree when this test was written; a row
// may only name packages of a lower layer.
var engineLayers = map[string]struct {
	layer int
	may   []string
}{
	"cache":                  {layerBase, nil},
	"internal/pipeline":      {layerBase, nil},
	"internal/bufpool":       {layerBase, nil},
	"engine/store":           {layerBase, nil},
	"engine/crypto":          {layerBase, nil},
	"engine/keymap":          {layerBase, nil},
	"engine/retention":       {layerBase, nil},
	"engine/format":          {layerCodec, []string{"engine/crypto"}},
	"engine/object":          {layerCodec, []string{"cache"}},
	"engine/store/diskcache": {layerCodec, []string{"engine/store"}},
	"engine/store/faults":    {layerCodec, []string{"engine/store"}},
	"engine/store/storetest": {layerCodec, []string{"engine/store"}},
	"engine/lease":           {layerCodec, []string{"engine/crypto", "engine/store"}},
	"engine/tree":            {layerStructure, []string{"engine/crypto", "engine/format"}},
	"engine/index":           {layerStructure, []string{"engine/crypto", "engine/format"}},
	"engine": {layerRepository, []string{"engine/store", "engine/crypto", "engine/format", "engine/tree",
		"engine/index", "engine/object", "engine/lease", "internal/bufpool"}},
	"engine/backup":     {layerDriver, driverMay},
	"engine/restore":    {layerDriver, driverMay},
	"engine/check":      {layerDriver, driverMay},
	"engine/repair":     {layerDriver, driverMay},
	"internal/testtree": {layerBase, nil},
	"engine/enginetest": {layerTestSupport, []string{"engine", "engine/backup", "engine/restore", "engine/store",
		"engine/crypto", "internal/testtree"}},
}

// objectPrefixes are the directories of the store's layout ("packs/"
// covers "packs/d/" and "packs/m/"). The bare word "config" is too common
// to ban.
var objectPrefixes = []string{"packs/", "index/", "snapshots/", "locks/"}

// TestPackagesLoad: the go tool lists every package without an error (an
// import cycle shows here first).
func TestPackagesLoad(t *testing.T) {
	g := load(t)
	cycle := g.cycle()
	if cycle != nil {
		t.Errorf("import cycle: %s", g.show(cycle))
	}
	seen := map[string]bool{}
	for _, p := range g.own {
		var msgs []string
		if p.Error != nil {
			msgs = append(msgs, rel(p.ImportPath)+": "+p.Error.Err)
		}
		for _, e := range p.DepsErrors {
			msgs = append(msgs, e.Err) // the same for every importer: once
		}
		for _, m := range msgs {
			if !seen[m] && !(cycle != nil && strings.Contains(m, "import cycle not allowed")) {
				t.Errorf("go list: %s", m)
			}
			seen[m] = true
		}
	}
}

// TestEngineImportsNoAdapter is rule 1.
func TestEngineImportsNoAdapter(t *testing.T) {
	g := load(t)
	bad := func(p string) bool {
		return isAWS(p) || isFuse(p) || under(p, "cmd") || p == module+"/fusefs" || p == module+"/s3io"
	}
	engine := func(p string) bool { return under(p, "engine") }
	g.mustNotReach(t, engine, bad, "nothing under engine/ may depend on cmd, fusefs, s3io, the AWS SDK or go-fuse")
	g.mustNotImportInTests(t, engine, bad, "engine's tests may not import cmd, fusefs, s3io, the AWS SDK or go-fuse")
}

// TestCacheImportsNothingOfCoffer is rule 2.
func TestCacheImportsNothingOfCoffer(t *testing.T) {
	g := load(t)
	cache := func(p string) bool { return p == module+"/cache" }
	// cache/cachetest, its tests' fake store, is cache's own.
	coffer := func(p string) bool { return inModule(p) && !under(p, "cache") }
	g.mustNotReach(t, cache, coffer, "cache may import nothing of coffer")
	g.mustNotImportInTests(t, cache, coffer, "cache's tests may import nothing of coffer")
}

// TestFusefsImportsNoS3 is rule 3.
func TestFusefsImportsNoS3(t *testing.T) {
	g := load(t)
	fusefs := func(p string) bool { return p == module+"/fusefs" }
	s3 := func(p string) bool { return isAWS(p) || p == module+"/s3io" }
	g.mustNotReach(t, fusefs, s3, "fusefs may depend on neither s3io nor the AWS SDK")
	g.mustNotImportInTests(t, fusefs, s3, "fusefs's tests may import neither s3io nor the AWS SDK")
}

// TestOnlyS3ioImportsAWS is rule 4.
func TestOnlyS3ioImportsAWS(t *testing.T) {
	g := load(t)
	others := func(p string) bool { return p != module+"/s3io" }
	g.mustNotImport(t, others, isAWS, "only s3io may import the AWS SDK")
}

// TestOnlyFusefsImportsGoFuse is rule 5.
func TestOnlyFusefsImportsGoFuse(t *testing.T) {
	g := load(t)
	others := func(p string) bool { return p != module+"/fusefs" }
	g.mustNotImport(t, others, isFuse, "only fusefs may import go-fuse")
}

// TestEngineLayers is rule 6.
func TestEngineLayers(t *testing.T) {
	g := load(t)
	names := make([]string, 0, len(engineLayers))
	for name := range engineLayers {
		names = append(names, name)
	}
	sort.Strings(names)

	// The table itself only points down.
	for _, name := range names {
		row := engineLayers[name]
		for _, m := range row.may {
			low, ok := engineLayers[m]
			switch {
			case !ok:
				t.Errorf("engineLayers: %s may import %s, which has no row", name, m)
			case low.layer >= row.layer:
				t.Errorf("engineLayers: %s (layer %s) may import %s (layer %s): a row may only name lower layers",
					name, layerNames[row.layer], m, layerNames[low.layer])
			}
		}
		if _, ok := g.pkgs[module+"/"+name]; !ok {
			t.Errorf("engineLayers: %s has a row but is no package of the module: remove the row", name)
		}
	}

	// Every engine package has a row.
	for _, p := range g.own {
		name := rel(p.ImportPath)
		if _, ok := engineLayers[name]; !ok && under(p.ImportPath, "engine") {
			t.Errorf("%s is an engine package without a row in engineLayers: add its layer and what it may import", name)
		}
	}

	// Every import of coffer is in the importer's row.
	for _, name := range names {
		row := engineLayers[name]
		p := g.pkgs[module+"/"+name]
		if p == nil {
			continue
		}
		for _, imp := range p.Imports {
			if !inModule(imp) || slices.Contains(row.may, rel(imp)) {
				continue
			}
			why := "which its row in engineLayers does not list"
			if dep, ok := engineLayers[rel(imp)]; !ok {
				why = "which is not an engine package"
			} else if dep.layer > row.layer {
				why = fmt.Sprintf("of the higher layer %s: an upward import", layerNames[dep.layer])
			} else if dep.layer == row.layer {
				why = fmt.Sprintf("of the same layer %s: a sideways import", layerNames[dep.layer])
			}
			t.Errorf("%s (layer %s) imports %s, %s\n\tat %s",
				name, layerNames[row.layer], rel(imp), why, g.site(p, imp, false))
		}
	}
}

// TestNoObjectPrefixOutsideStore is rule 7.
func TestNoObjectPrefixOutsideStore(t *testing.T) {
	g := load(t)
	// engine/store owns the layout; this folder spells the prefixes to ban
	// (it could take them from store.Prefix, but it imports nothing of
	// coffer so that it still builds, and names the culprit, when an
	// import cycle breaks the engine).
	exempt := []string{filepath.Join(g.root, "engine", "store"), filepath.Join(g.root, "internal", "layers")}
	fset := token.NewFileSet()
	for _, path := range g.files {
		if slices.Contains(exempt, filepath.Dir(path)) {
			continue
		}
		f, err := parser.ParseFile(fset, path, g.src[path], parser.SkipObjectResolution)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ImportSpec:
				return false // "index/suffixarray" is a standard package
			case *ast.BasicLit:
				if n.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(n.Value)
				if err != nil {
					return true
				}
				if pfx := spellsPrefix(s); pfx != "" {
					pos := fset.Position(n.Pos())
					r, _ := filepath.Rel(g.root, pos.Filename)
					t.Errorf("%s:%d: %s spells the object prefix %q, which only engine/store may; "+
						"use store.ObjectName, store.Prefix or store.ParseObjectName", r, pos.Line, n.Value, pfx)
				}
			}
			return true
		})
	}
}

// spellsPrefix returns the object prefix s starts with or has after a
// "/" ("arn:aws:s3:::b/c/index/"), or "".
func spellsPrefix(s string) string {
	for _, pfx := range objectPrefixes {
		if strings.HasPrefix(s, pfx) || strings.Contains(s, "/"+pfx) {
			return pfx
		}
	}
	return ""
}

// --- the package graph -----------------------------------------------------

// goPackage is what go list -json says of a package (the fields used).
type goPackage struct {
	ImportPath   string
	Dir          string
	Standard     bool
	GoFiles      []string
	CgoFiles     []string
	TestGoFiles  []string
	XTestGoFiles []string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
	DepsErrors   []*struct{ Err string }
}

type graph struct {
	root  string                // the module's folder
	pkgs  map[string]*goPackage // every package listed: the module's and their dependencies
	own   []*goPackage          // the module's, by import path
	files []string              // every Go file of the module, sorted
	src   map[string][]byte     // their contents
}

var (
	loadOnce   sync.Once
	loadedG    *graph
	loadFailed error
)

func load(t *testing.T) *graph {
	t.Helper()
	loadOnce.Do(func() { loadedG, loadFailed = goList() })
	if loadFailed != nil {
		t.Fatal(loadFailed)
	}
	return loadedG
}

// goTool is the go command: the one on PATH, else the one of the
// toolchain that built this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func goList() (*graph, error) {
	gomod, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	// -e: a broken package (an import cycle) is listed with its error
	// rather than stopping the listing, so the rules below can still name
	// the import that broke it.
	cmd := exec.Command(goTool(), "list", "-e", "-deps",
		"-json=ImportPath,Dir,Standard,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,Imports,TestImports,XTestImports,Error,DepsErrors",
		"./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps -json ./... in %s: %v\n%s", root, err, stderr.Bytes())
	}
	g := &graph{root: root, pkgs: map[string]*goPackage{}}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(goPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		g.pkgs[p.ImportPath] = p
		if inModule(p.ImportPath) {
			g.own = append(g.own, p)
		}
	}
	sort.Slice(g.own, func(i, j int) bool { return g.own[i].ImportPath < g.own[j].ImportPath })
	if len(g.own) == 0 {
		return nil, fmt.Errorf("go list in %s listed no package of %s", root, module)
	}
	if err := g.readSources(); err != nil {
		return nil, err
	}
	return g, nil
}

// readSources reads go.mod and every Go file of the module (not those of
// testdata, hidden or _ folders, or nested modules). Besides feeding the
// prefix scan, it makes go test's result cache right: a cached result
// stands until a file the test itself opened changes, and go list reads
// the files in another process.
func (g *graph) readSources() error {
	if _, err := os.ReadFile(filepath.Join(g.root, "go.mod")); err != nil {
		return err
	}
	g.src = map[string][]byte{}
	err := filepath.WalkDir(g.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == g.root {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		g.files = append(g.files, path)
		g.src[path] = b
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the module's Go files: %w", err)
	}
	if len(g.files) == 0 {
		return fmt.Errorf("found no Go file in %s", g.root)
	}
	return nil
}

// mustNotReach fails for every import of a package in set (non-test code)
// that leaves set and is, or leads through non-test imports to, a package
// bad reports; it names the chain and the file of the first import.
func (g *graph) mustNotReach(t *testing.T, set, bad func(string) bool, rule string) {
	t.Helper()
	for _, p := range g.own {
		if !set(p.ImportPath) {
			continue
		}
		for _, imp := range p.Imports {
			if set(imp) {
				continue // checked as an importer itself
			}
			if c := g.chain(imp, bad); c != nil {
				t.Errorf("%s: %s\n\tat %s", rule, g.show(append([]string{p.ImportPath}, c...)), g.site(p, imp, false))
			}
		}
	}
}

// mustNotImportInTests fails for every direct import of the test files of
// a package in set that bad reports.
func (g *graph) mustNotImportInTests(t *testing.T, set, bad func(string) bool, rule string) {
	t.Helper()
	for _, p := range g.own {
		if !set(p.ImportPath) {
			continue
		}
		for _, imp := range append(append([]string{}, p.TestImports...), p.XTestImports...) {
			if bad(imp) {
				t.Errorf("%s: %s's tests import %s\n\tat %s", rule, rel(p.ImportPath), rel(imp), g.site(p, imp, true))
			}
		}
	}
}

// mustNotImport fails for every direct import, in code or tests, of a
// package in set that bad reports.
func (g *graph) mustNotImport(t *testing.T, set, bad func(string) bool, rule string) {
	t.Helper()
	for _, p := range g.own {
		if !set(p.ImportPath) {
			continue
		}
		seen := map[string]bool{}
		for _, imp := range p.Imports {
			if bad(imp) {
				seen[imp] = true
				t.Errorf("%s: %s imports %s\n\tat %s", rule, rel(p.ImportPath), imp, g.site(p, imp, false))
			}
		}
		for _, imp := range append(append([]string{}, p.TestImports...), p.XTestImports...) {
			if bad(imp) && !seen[imp] {
				seen[imp] = true
				t.Errorf("%s: %s's tests import %s\n\tat %s", rule, rel(p.ImportPath), imp, g.site(p, imp, true))
			}
		}
	}
}

// chain returns the shortest chain of non-test imports from from (itself
// included) to a package bad reports, or nil.
func (g *graph) chain(from string, bad func(string) bool) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if bad(cur) {
			var c []string
			for p := cur; p != ""; p = prev[p] {
				c = append(c, p)
			}
			slices.Reverse(c)
			return c
		}
		if p := g.pkgs[cur]; p != nil {
			for _, imp := range p.Imports {
				if _, ok := prev[imp]; !ok {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return nil
}

// cycle returns an import cycle among the module's packages (non-test
// imports), first package repeated last, or nil.
func (g *graph) cycle() []string {
	const (
		unseen = iota
		open
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(p string) []string {
		switch state[p] {
		case open:
			i := slices.Index(stack, p)
			return append(slices.Clone(stack[i:]), p)
		case done:
			return nil
		}
		state[p] = open
		stack = append(stack, p)
		if pkg := g.pkgs[p]; pkg != nil {
			for _, imp := range pkg.Imports {
				if inModule(imp) {
					if c := visit(imp); c != nil {
						return c
					}
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[p] = done
		return nil
	}
	for _, p := range g.own {
		if c := visit(p.ImportPath); c != nil {
			return c
		}
	}
	return nil
}

// show writes a chain of import paths, the module's relative to it.
func (g *graph) show(c []string) string {
	s := make([]string, len(c))
	for i, p := range c {
		s[i] = rel(p)
	}
	return strings.Join(s, " → ")
}

// site returns file:line of the import of imp in p's code (or its tests).
func (g *graph) site(p *goPackage, imp string, tests bool) string {
	files := append(append([]string{}, p.GoFiles...), p.CgoFiles...)
	if tests {
		files = append(append([]string{}, p.TestGoFiles...), p.XTestGoFiles...)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		path := filepath.Join(p.Dir, name)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			continue
		}
		for _, spec := range f.Imports {
			if v, err := strconv.Unquote(spec.Path.Value); err == nil && v == imp {
				r, err := filepath.Rel(g.root, path)
				if err != nil {
					r = path
				}
				return fmt.Sprintf("%s:%d", r, fset.Position(spec.Pos()).Line)
			}
		}
	}
	return rel(p.ImportPath) + " (file not found)"
}

func inModule(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }

// under reports whether p is the module's package dir or one below it.
func under(p, dir string) bool {
	return p == module+"/"+dir || strings.HasPrefix(p, module+"/"+dir+"/")
}

func isAWS(p string) bool  { return strings.HasPrefix(p, "github.com/aws/") }
func isFuse(p string) bool { return strings.HasPrefix(p, "github.com/hanwen/go-fuse/") }

// rel names a package of the module relative to it; others stay whole.
func rel(p string) string {
	if p == module {
		return "."
	}
	return strings.TrimPrefix(p, module+"/")
}
