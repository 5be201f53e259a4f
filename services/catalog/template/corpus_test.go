package template

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/catalog/corpustest"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

type corpusNode struct {
	file string
	pipe *datafile.Pipe
	node *datafile.Node
}

func corpusPipes(t testing.TB) []corpusNode {
	t.Helper()
	var out []corpusNode
	err := filepath.WalkDir(corpustest.Dir(t), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || datafile.KindOf(p) != datafile.KindPipe {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		pipe, err := datafile.ParsePipe(p, src, datafile.Options{ReadFile: os.ReadFile})
		if err != nil {
			t.Errorf("%v", err)
			return nil
		}
		for i := range pipe.Nodes {
			out = append(out, corpusNode{file: p, pipe: pipe, node: &pipe.Nodes[i]})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// realisticParams builds request parameters for a template: a plausible
// value for each discovered parameter, by type, with values for the untyped
// names the corpus uses in comparisons.
func realisticParams(params []Parameter) map[string]string {
	named := map[string]string{
		"granularity": "daily", "include_previous_period": "true", "order": "asc",
		"dimension": "model", "column_name": "provider", "per_filter": "osname",
		"start_date": "2024-01-01 00:00:00", "end_date": "2024-01-03 00:00:00",
		"date_from": "2024-01-01", "date_to": "2024-01-31", "level": "ERROR",
		"message": "timeout|refused", "bucket_id": "1", "num_buckets": "5",
		"start_backfill_timestamp": "2024-01-01 00:00:00", "end_backfill_timestamp": "2024-02-01 00:00:00",
		"start": "2024-01-01 00:00:00", "end": "2024-02-01 00:00:00", "since": "1700000000",
		"timezone": "UTC", "page": "0", "page_size": "10",
	}
	out := map[string]string{}
	for _, p := range params {
		if p.Implicit {
			continue
		}
		if v, ok := named[p.Name]; ok && p.Type != "Date" && p.Type != "DateTime" && p.Type != "DateTime64" {
			out[p.Name] = v
			continue
		}
		switch p.Type {
		case "Date":
			out[p.Name] = "2024-01-01"
		case "DateTime":
			out[p.Name] = "2024-01-01 00:00:00"
		case "DateTime64":
			out[p.Name] = "2024-01-01 00:00:00.000"
		case "Array":
			if p.ElementType != "" && p.ElementType != "String" {
				out[p.Name] = "1,2"
			} else {
				out[p.Name] = "a,b"
			}
		case "String", "":
			out[p.Name] = "value"
		case "Boolean":
			out[p.Name] = "1"
		case "Float32", "Float64":
			out[p.Name] = "1.5"
		default:
			out[p.Name] = "3"
		}
	}
	return out
}

func TestRenderCorpus(t *testing.T) {
	nodes := corpusPipes(t)
	templated := 0
	for _, cn := range nodes {
		tpl, err := Parse(cn.node.SQL)
		if err != nil {
			var te *Error
			if errors.As(err, &te) {
				t.Errorf("%s: %v", cn.node.SQLPosition(te.Line, te.Column), te.Msg)
			} else {
				t.Errorf("%s node %s: %v", cn.file, cn.node.Name, err)
			}
			continue
		}
		if !tpl.Templated() {
			continue
		}
		templated++
		opts := RenderOptions{JobTimestamp: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}
		checkOpts := opts
		checkOpts.Check = true
		if _, err := tpl.Render(nil, checkOpts); err != nil {
			t.Errorf("%s node %s: check render: %v", cn.file, cn.node.Name, err)
		}
		params := realisticParams(tpl.Parameters())
		if _, err := tpl.Render(params, opts); err != nil {
			t.Errorf("%s node %s: render with %v: %v", cn.file, cn.node.Name, params, err)
		}
	}
	if templated < 20 {
		t.Errorf("only %d templated nodes found", templated)
	}
	t.Logf("%d nodes, %d templated", len(nodes), templated)
}

// BenchmarkRenderCorpus parses and renders every templated corpus node with
// realistic parameters.
func BenchmarkRenderCorpus(b *testing.B) {
	var tpls []*Template
	var params []map[string]string
	for _, cn := range corpusPipes(b) {
		tpl, err := Parse(cn.node.SQL)
		if err != nil {
			b.Fatal(err)
		}
		if tpl.Templated() {
			tpls = append(tpls, tpl)
			params = append(params, realisticParams(tpl.Parameters()))
		}
	}
	opts := RenderOptions{JobTimestamp: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k, tpl := range tpls {
			if _, err := tpl.Render(params[k], opts); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(tpls))/b.Elapsed().Seconds(), "renders/s")
}
