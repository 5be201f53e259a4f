package template

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/chsql"
)

// FuzzTemplate parses and renders fuzzed templates with a fuzzed parameter
// value (normal and check mode), checking that nothing panics, that errors
// are typed and positioned, and that the value rendered through String()
// stays one literal.
func FuzzTemplate(f *testing.F) {
	seeds := []string{
		"%SELECT {{ String(x) }}",
		"%{% if defined(x) %}{{ Int32(x, 1) }}{% else %}{{ Array(x, 'Int8', '1,2') }}{% end %}",
		"%{% for a, b in enumerate_with_last(split_to_array(x)) %}{{ b }}{% if not a %},{% end %}{% end %}",
		"%{% set v = Int32(x, 3) * 2 %}{{ v }} {{ column(x, 'c') }} {{ columns(x, 'a,b') }} {{ symbol(x) }}",
		"%{{ sql_and(a=String(x, defined=False), b__in=Array(x, defined=False)) }}",
		"%{{ day_diff(x, '2020-01-01') }} {{ date_diff_in_hours(x, x) }} {{ JSON(x, '{}') }}",
		"%{{ max_threads(2) }}{{ error('e') }}{{ x.split(',') }}{{ len(x) }}",
		"%{% while False %}{% end %}{# c #}{{! raw }}",
		"SELECT 1",
	}
	for _, s := range seeds {
		f.Add(s, "value")
		f.Add(s, "' OR 1=1 --")
	}
	f.Fuzz(func(t *testing.T, src, value string) {
		tpl, err := Parse(src)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) || te.Line < 1 || te.Column < 1 {
				t.Fatalf("parse error without position: %v", err)
			}
		} else {
			_ = tpl.Parameters()
			params := map[string]string{"x": value, "y": value}
			for _, check := range []bool{false, true} {
				_, err := tpl.Render(params, RenderOptions{JobTimestamp: time.Unix(0, 0), Check: check})
				if err != nil {
					var te *Error
					var me *MissingParametersError
					var ue *UserError
					if !errors.As(err, &te) && !errors.As(err, &me) && !errors.As(err, &ue) {
						t.Fatalf("untyped render error %T: %v", err, err)
					}
					if te != nil && (te.Line < 1 || te.Column < 1) {
						t.Fatalf("render error without position: %v", err)
					}
				}
			}
		}
		fixed, _ := Parse("%SELECT {{ String(x) }} AS a, {{ symbol(x) }}")
		out, err := fixed.Render(map[string]string{"x": value}, RenderOptions{})
		if err != nil {
			t.Fatalf("String render failed: %v", err)
		}
		toks, err := chsql.Lex(out)
		if err != nil {
			t.Fatalf("rendered SQL does not lex: %v: %q", err, out)
		}
		if len(toks) != 6 || toks[1].Kind != chsql.String || toks[2].Text != "AS" || toks[5].Kind != chsql.QuotedIdent {
			t.Fatalf("value %q changed the token structure: %q", value, out)
		}
	})
}
