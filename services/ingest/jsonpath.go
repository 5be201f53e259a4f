package ingest

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// A jsonPath is a column's `json:<path>` binding: `$` then steps — `.name`, `['name']` or
// `["name"]`, `[n]` (an array element) and `[:]` (every element: the rest of the path is taken
// from each element, giving an array).
type jsonPath struct {
	text  string
	steps []pathStep
}

type pathStep struct {
	key   string
	index int  // for an index step
	isIdx bool // [n]
	all   bool // [:]
}

// parseJSONPath parses a path as the datafiles write it.
func parseJSONPath(p string) (jsonPath, error) {
	jp := jsonPath{text: p}
	s := strings.TrimSpace(p)
	if !strings.HasPrefix(s, "$") {
		return jp, fmt.Errorf("json path %q: must start with $", p)
	}
	s = s[1:]
	for len(s) > 0 {
		switch {
		case s[0] == '.':
			s = s[1:]
			end := strings.IndexAny(s, ".[]")
			if end < 0 {
				end = len(s)
			}
			if end == 0 {
				return jp, fmt.Errorf("json path %q: empty name after '.'", p)
			}
			if end < len(s) && s[end] == ']' {
				return jp, fmt.Errorf("json path %q: unexpected ']'", p)
			}
			jp.steps = append(jp.steps, pathStep{key: s[:end]})
			s = s[end:]
		case s[0] == '[':
			end := strings.IndexByte(s, ']')
			if len(s) > 1 && (s[1] == '\'' || s[1] == '"') {
				q := s[1]
				close := strings.IndexByte(s[2:], q)
				if close < 0 || len(s) < close+4 || s[close+3] != ']' {
					return jp, fmt.Errorf("json path %q: unterminated quoted name", p)
				}
				jp.steps = append(jp.steps, pathStep{key: s[2 : close+2]})
				s = s[close+4:]
				continue
			}
			if end < 0 {
				return jp, fmt.Errorf("json path %q: missing ']'", p)
			}
			inner := strings.TrimSpace(s[1:end])
			switch {
			case inner == ":" || inner == "*":
				jp.steps = append(jp.steps, pathStep{all: true})
			default:
				n, err := strconv.Atoi(inner)
				if err != nil {
					return jp, fmt.Errorf("json path %q: [%s] is neither [:] nor an index", p, inner)
				}
				jp.steps = append(jp.steps, pathStep{index: n, isIdx: true})
			}
			s = s[end+1:]
		default:
			return jp, fmt.Errorf("json path %q: unexpected %q", p, s[:1])
		}
	}
	return jp, nil
}

// eval returns the value at the path, or nil when it is missing. A [:] step builds an array
// (in arena) of what the rest of the path finds in each element; elements where it finds
// nothing are left out.
func (jp jsonPath) eval(v *fastjson.Value, arena *fastjson.Arena) *fastjson.Value {
	return evalSteps(v, jp.steps, arena)
}

func evalSteps(v *fastjson.Value, steps []pathStep, arena *fastjson.Arena) *fastjson.Value {
	for i, st := range steps {
		if v == nil {
			return nil
		}
		switch {
		case st.all:
			items, err := v.Array()
			if err != nil {
				return nil
			}
			rest := steps[i+1:]
			if len(rest) == 0 {
				return v
			}
			out := arena.NewArray()
			n := 0
			for _, it := range items {
				if r := evalSteps(it, rest, arena); r != nil {
					out.SetArrayItem(n, r)
					n++
				}
			}
			return out
		case st.isIdx:
			items, err := v.Array()
			if err != nil {
				return nil
			}
			idx := st.index
			if idx < 0 {
				idx += len(items)
			}
			if idx < 0 || idx >= len(items) {
				return nil
			}
			v = items[idx]
		default:
			if v.Type() != fastjson.TypeObject {
				return nil
			}
			v = v.Get(st.key)
		}
	}
	return v
}
