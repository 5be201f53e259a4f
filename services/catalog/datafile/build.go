package datafile

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/chsql"
)

// keywords known to the datafile grammar (spec §2.1, §3). KAFKA_*, IMPORT_*
// and EXPORT_* keys are accepted by prefix.
var keywords = map[string]bool{
	"DESCRIPTION": true, "SCHEMA": true, "INDEXES": true, "INDICES": true,
	"ENGINE": true, "ENGINE_PARTITION_KEY": true, "ENGINE_SORTING_KEY": true,
	"ENGINE_PRIMARY_KEY": true, "ENGINE_SAMPLING_KEY": true, "ENGINE_TTL": true,
	"ENGINE_SETTINGS": true, "ENGINE_VER": true, "ENGINE_IS_DELETED": true,
	"ENGINE_COLUMNS": true, "ENGINE_SIGN": true, "ENGINE_VERSION": true,
	"ENGINE_JOIN_STRICTNESS": true, "ENGINE_JOIN_TYPE": true, "ENGINE_KEY_COLUMNS": true,
	"PARTITION_KEY": true, "SORTING_KEY": true, "PRIMARY_KEY": true, "SAMPLING_KEY": true, "TTL": true,
	"TOKEN": true, "TAGS": true, "SHARED_WITH": true, "FORWARD_QUERY": true,
	"NODE": true, "SQL": true, "TYPE": true, "DATASOURCE": true, "TARGET_DATASOURCE": true,
	"COPY_SCHEDULE": true, "COPY_MODE": true, "MODE": true, "DEPLOYMENT_METHOD": true,
	"INCLUDE": true, "VERSION": true,
}

func isKnownKeyword(kw string) bool {
	if keywords[kw] {
		return true
	}
	return connectorFeature(kw) != ""
}

// connectorFeature returns "kafka", "import" or "export" for connector keys.
func connectorFeature(kw string) string {
	switch {
	case strings.HasPrefix(kw, "KAFKA_") && len(kw) > len("KAFKA_"):
		return "kafka"
	case strings.HasPrefix(kw, "IMPORT_") && len(kw) > len("IMPORT_"):
		return "import"
	case strings.HasPrefix(kw, "EXPORT_") && len(kw) > len("EXPORT_"):
		return "export"
	}
	return ""
}

// engineKeywords maps the ENGINE_* keys and their legacy aliases to the canonical key.
var engineKeywords = map[string]string{
	"ENGINE": "ENGINE", "ENGINE_PARTITION_KEY": "ENGINE_PARTITION_KEY", "PARTITION_KEY": "ENGINE_PARTITION_KEY",
	"ENGINE_SORTING_KEY": "ENGINE_SORTING_KEY", "SORTING_KEY": "ENGINE_SORTING_KEY",
	"ENGINE_PRIMARY_KEY": "ENGINE_PRIMARY_KEY", "PRIMARY_KEY": "ENGINE_PRIMARY_KEY",
	"ENGINE_SAMPLING_KEY": "ENGINE_SAMPLING_KEY", "SAMPLING_KEY": "ENGINE_SAMPLING_KEY",
	"ENGINE_TTL": "ENGINE_TTL", "TTL": "ENGINE_TTL", "ENGINE_SETTINGS": "ENGINE_SETTINGS",
	"ENGINE_VER": "ENGINE_VER", "ENGINE_IS_DELETED": "ENGINE_IS_DELETED", "ENGINE_SIGN": "ENGINE_SIGN",
	"ENGINE_VERSION": "ENGINE_VERSION", "ENGINE_COLUMNS": "ENGINE_COLUMNS",
	"ENGINE_JOIN_STRICTNESS": "ENGINE_JOIN_STRICTNESS", "ENGINE_JOIN_TYPE": "ENGINE_JOIN_TYPE",
	"ENGINE_KEY_COLUMNS": "ENGINE_KEY_COLUMNS",
}

func (p *parser) env(s string) string { return substitute(s, p.opts.Env) }

func (p *parser) parseVersion(e *entry) (*int, error) {
	v := strings.TrimSpace(p.env(e.value()))
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || strings.HasPrefix(v, "+") {
		return nil, errAt(e.valuePos(), "VERSION must be a non-negative integer, got %q", v)
	}
	return &n, nil
}

func (p *parser) parseToken(e *entry) (Token, error) {
	if e.block || len(e.args) < 2 {
		return Token{}, errAt(e.pos, "TOKEN expects a token name and a permission: TOKEN \"name\" READ|APPEND")
	}
	name := unquote(p.env(e.args[0].text))
	if name == "" {
		return Token{}, errAt(Pos{File: e.pos.File, Line: e.pos.Line, Column: e.args[0].col}, "TOKEN name must not be empty")
	}
	perm := strings.ToUpper(unquote(e.args[1].text))
	return Token{Name: name, Permission: perm, Pos: e.pos}, nil
}

func (p *parser) parseTags(e *entry) Tags {
	t := Tags{Operational: map[string]string{}, Pos: e.pos}
	for _, part := range strings.Split(p.env(e.value()), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if k, v, ok := strings.Cut(part, "="); ok {
			t.Operational[strings.TrimSpace(k)] = strings.TrimSpace(v)
			continue
		}
		t.Filtering = append(t.Filtering, part)
	}
	return t
}

func sharedWith(v string) []string {
	var out []string
	for _, line := range strings.Split(v, "\n") {
		for _, part := range strings.Split(line, ",") {
			if s := strings.TrimSpace(unquote(strings.TrimSpace(part))); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// description returns a description value: dedented block text or inline
// value. Descriptions are free text and take no $VAR substitution (CLI5).
func (p *parser) description(e *entry) string {
	if e.block {
		return strings.TrimSpace(dedent(e.lines))
	}
	return e.value()
}

// ParseDataSource parses a .datasource file.
func ParseDataSource(path string, src []byte, opts Options) (*DataSource, error) {
	p := &parser{path: path, opts: opts}
	entries, err := p.scan(splitLines(path, src))
	if err != nil {
		return nil, err
	}
	base := ResourceName(path)
	ds := &DataSource{Name: base, BaseName: base, Path: path, Pos: Pos{File: path, Line: 1, Column: 1}}
	ds.Tags.Operational = map[string]string{}
	var schema *entry
	nodes := 0
	for i := range entries {
		e := &entries[i]
		switch kw := e.keyword; {
		case kw == "SCHEMA":
			if schema != nil {
				return nil, errAt(e.pos, "SCHEMA given twice (first at line %d): a datasource has one SCHEMA", schema.pos.Line)
			}
			schema = e
			cols, uses, err := parseSchema(e)
			if err != nil {
				return nil, err
			}
			ds.Columns = cols
			ds.uses = append(ds.uses, uses...)
		case kw == "INDEXES" || kw == "INDICES":
			idx, uses, err := parseIndexes(e)
			if err != nil {
				return nil, err
			}
			ds.Indexes = append(ds.Indexes, idx...)
			ds.uses = append(ds.uses, uses...)
		case kw == "DESCRIPTION":
			ds.Description = p.description(e)
		case kw == "VERSION":
			v, err := p.parseVersion(e)
			if err != nil {
				return nil, err
			}
			ds.Version = v
		case kw == "TOKEN":
			t, err := p.parseToken(e)
			if err != nil {
				return nil, err
			}
			ds.Tokens = append(ds.Tokens, t)
		case kw == "TAGS":
			ds.Tags = p.parseTags(e)
		case kw == "SHARED_WITH":
			ds.SharedWith = append(ds.SharedWith, sharedWith(p.env(e.value()))...)
		case kw == "FORWARD_QUERY":
			ds.ForwardQuery = strings.TrimSpace(dedent(e.lines))
			if !e.block {
				ds.ForwardQuery = e.value()
			}
			ds.ForwardQueryPos = e.valuePos()
		case kw == "NODE":
			nodes++
			if nodes > 1 {
				return nil, errAt(e.pos, "a .datasource file has a single implicit node: NODE can appear at most once")
			}
		case kw == "SQL":
			return nil, errAt(e.pos, "SQL is not allowed in a .datasource file: queries belong in a .pipe NODE")
		case strings.HasPrefix(kw, "ENGINE") || kw == "PARTITION_KEY" || kw == "SORTING_KEY" || kw == "PRIMARY_KEY" || kw == "SAMPLING_KEY" || kw == "TTL":
			if err := p.engineKey(&ds.Engine, e); err != nil {
				return nil, err
			}
		case connectorFeature(kw) == "kafka" || connectorFeature(kw) == "import":
			ds.Connector = append(ds.Connector, Setting{Keyword: kw, Value: p.env(e.value()), Pos: e.pos})
			ds.OutOfScope = append(ds.OutOfScope, OutOfScope{Feature: connectorFeature(kw), Keyword: kw, Pos: e.pos})
		default:
			return nil, errAt(e.pos, "%s is not valid in a .datasource file (it belongs in a .pipe)", kw)
		}
	}
	if schema == nil {
		return nil, errAt(Pos{File: path, Line: 1, Column: 1}, "missing SCHEMA: a .datasource file must define its columns with a SCHEMA > block")
	}
	if len(ds.Columns) == 0 {
		return nil, errAt(schema.pos, "SCHEMA defines no columns: expected one column per line, e.g. `id` UInt64")
	}
	if err := ds.Engine.check(); err != nil {
		return nil, err
	}
	if ds.Version != nil {
		ds.Name = base + "__v" + strconv.Itoa(*ds.Version)
	}
	return ds, nil
}

// engineKey parses one ENGINE or ENGINE_* key into the engine: each key is read with its own
// grammar, and errors name the offending token's place.
func (p *parser) engineKey(eng *Engine, e *entry) error {
	kw := engineKeywords[e.keyword]
	text, pos := p.inlineValue(e)
	if kw == "ENGINE" {
		v := strings.TrimSpace(text)
		canon, ok := canonicalEngine(v)
		if !ok {
			return errAt(e.valuePos(), "unsupported engine %q: expected one of %s", v, strings.Join(engineNames, ", "))
		}
		eng.Name = canon
		eng.Pos = e.pos
		eng.Set = true
		return nil
	}
	if !eng.Set {
		eng.Pos = e.pos
	}
	eng.Set = true
	var err error
	var uses []ColumnUse
	exprKey := func(dst *string, opts chsql.ExprOptions) {
		*dst, uses, err = expr(text, 0, pos, kw, opts)
	}
	oneName := func(dst *string) {
		var names []string
		if names, uses, err = parseColumnNames(text, pos, kw, false); err == nil {
			*dst = names[0]
		}
	}
	switch kw {
	case "ENGINE_PARTITION_KEY":
		exprKey(&eng.PartitionKey, chsql.ExprOptions{})
	case "ENGINE_SORTING_KEY":
		exprKey(&eng.SortingKey, chsql.ExprOptions{})
	case "ENGINE_PRIMARY_KEY":
		exprKey(&eng.PrimaryKey, chsql.ExprOptions{})
	case "ENGINE_SAMPLING_KEY":
		exprKey(&eng.SamplingKey, chsql.ExprOptions{})
	case "ENGINE_TTL":
		exprKey(&eng.TTL, chsql.ExprOptions{TTL: true})
	case "ENGINE_SETTINGS":
		eng.Settings, err = parseSettings(text, pos)
	case "ENGINE_VER":
		oneName(&eng.Ver)
	case "ENGINE_IS_DELETED":
		oneName(&eng.IsDeleted)
	case "ENGINE_SIGN":
		oneName(&eng.Sign)
	case "ENGINE_VERSION":
		oneName(&eng.Version)
	case "ENGINE_COLUMNS":
		eng.Columns, uses, err = parseColumnNames(text, pos, kw, true)
	case "ENGINE_KEY_COLUMNS":
		eng.KeyColumns, uses, err = parseColumnNames(text, pos, kw, true)
	case "ENGINE_JOIN_STRICTNESS":
		eng.JoinStrictness, err = oneWord(text, pos, kw, "ANY", "ALL", "SEMI", "ANTI")
	case "ENGINE_JOIN_TYPE":
		eng.JoinType, err = oneWord(text, pos, kw, "LEFT", "INNER", "RIGHT", "FULL")
	}
	if err != nil {
		return err
	}
	if eng.uses == nil {
		eng.uses = map[string][]ColumnUse{}
	}
	eng.uses[kw] = uses // a key given again replaces the earlier one, uses included
	return nil
}

// oneWord reads a value that is one of a few words, returned upper-case.
func oneWord(text string, pos posFunc, kw string, words ...string) (string, error) {
	v := strings.TrimSpace(text)
	for _, w := range words {
		if strings.EqualFold(v, w) {
			return w, nil
		}
	}
	return "", errAt(pos(len(text)-len(strings.TrimLeft(text, " \t"))), "invalid %s %q: expected %s", kw, v, strings.Join(words, ", "))
}

var nodeTypes = map[string]NodeType{
	"standard": NodeStandard, "endpoint": NodeEndpoint, "materialized": NodeMaterialized,
	"copy": NodeCopy, "sink": NodeSink,
}

// ParsePipe parses a .pipe file.
func ParsePipe(path string, src []byte, opts Options) (*Pipe, error) {
	p := &parser{path: path, opts: opts}
	entries, err := p.scan(splitLines(path, src))
	if err != nil {
		return nil, err
	}
	base := ResourceName(path)
	pipe := &Pipe{Name: base, BaseName: base, Path: path, Pos: Pos{File: path, Line: 1, Column: 1}}
	pipe.Tags.Operational = map[string]string{}
	var cur *Node
	seen := map[string]Pos{}
	for i := range entries {
		e := &entries[i]
		kw := e.keyword
		switch kw {
		case "NODE":
			name := strings.TrimSpace(p.env(e.value()))
			if name == "" {
				return nil, errAt(e.pos, "NODE expects a node name: NODE <name>")
			}
			if !isNameIdent(name) {
				return nil, errAt(e.valuePos(), "invalid node name %q: expected letters, digits and '_', not starting with a digit", name)
			}
			if prev, dup := seen[name]; dup {
				return nil, errAt(e.valuePos(), "node %q is defined twice (first at line %d)", name, prev.Line)
			}
			seen[name] = e.pos
			pipe.Nodes = append(pipe.Nodes, Node{Name: name, Type: NodeStandard, Pos: e.pos, KeyPos: map[string]Pos{}})
			cur = &pipe.Nodes[len(pipe.Nodes)-1]
			cur.Tags.Operational = map[string]string{}
			continue
		case "VERSION":
			v, err := p.parseVersion(e)
			if err != nil {
				return nil, err
			}
			pipe.Version = v
			continue
		case "TOKEN":
			t, err := p.parseToken(e)
			if err != nil {
				return nil, err
			}
			pipe.Tokens = append(pipe.Tokens, t)
			continue
		case "SCHEMA", "INDEXES", "INDICES", "FORWARD_QUERY", "SHARED_WITH":
			return nil, errAt(e.pos, "%s is not valid in a .pipe file (it belongs in a .datasource)", kw)
		}
		if cur == nil {
			switch {
			case kw == "DESCRIPTION":
				pipe.Description = p.description(e)
			case kw == "TAGS":
				pipe.Tags = p.parseTags(e)
			case kw == "SQL":
				return nil, errAt(e.pos, "SQL before any NODE: declare the node first with NODE <name>")
			default:
				return nil, errAt(e.pos, "%s before any NODE: node keys must follow a NODE <name> line", kw)
			}
			continue
		}
		if prev, dup := cur.KeyPos[kw]; dup && kw != "TAGS" {
			return nil, errAt(e.pos, "%s given twice in node %q (first at line %d)", kw, cur.Name, prev.Line)
		}
		cur.KeyPos[kw] = e.pos
		if err := p.nodeKey(pipe, cur, e); err != nil {
			return nil, err
		}
	}
	if len(pipe.Nodes) == 0 {
		return nil, errAt(Pos{File: path, Line: 1, Column: 1}, "a .pipe file needs at least one NODE <name> with a SQL > block")
	}
	for i := range pipe.Nodes {
		n := &pipe.Nodes[i]
		if _, ok := n.KeyPos["SQL"]; !ok {
			return nil, errAt(n.Pos, "node %q has no SQL: expected a SQL > block after NODE %s", n.Name, n.Name)
		}
		if n.Engine.Set {
			if err := n.Engine.check(); err != nil {
				return nil, err
			}
		}
	}
	if pipe.Version != nil {
		pipe.Name = base + "__v" + strconv.Itoa(*pipe.Version)
	}
	return pipe, nil
}

func (p *parser) nodeKey(pipe *Pipe, n *Node, e *entry) error {
	kw := e.keyword
	switch {
	case kw == "DESCRIPTION":
		n.Description = p.description(e)
	case kw == "TAGS":
		n.Tags = p.parseTags(e)
	case kw == "SQL":
		sql, lines, cols, pos := nodeSQL(e)
		// SQL takes $VAR substitution like other values (CLI5 eval_var),
		// except that "$$" stays (ClickHouse heredocs).
		n.SQL, n.SQLLines, n.sqlCols, n.SQLPos = substituteSQL(sql, p.opts.Env), lines, cols, pos
		if strings.TrimSpace(sql) == "" {
			return errAt(e.pos, "empty SQL in node %q: expected an indented query after SQL >", n.Name)
		}
		if !n.Templated() && (strings.Contains(sql, "{{") || strings.Contains(sql, "{%")) {
			return errAt(pos, "node %q uses template syntax ({{ }} or {%% %%}) but its SQL does not start with %%: add a line with %% before the query", n.Name)
		}
	case kw == "TYPE":
		v := strings.ToLower(strings.TrimSpace(p.env(e.value())))
		t, ok := nodeTypes[v]
		if !ok {
			return errAt(e.valuePos(), "invalid node TYPE %q: expected one of endpoint, materialized, copy, sink, standard", e.value())
		}
		n.Type, n.TypeSet = t, true
	case kw == "DATASOURCE":
		n.Datasource = strings.TrimSpace(p.env(e.value()))
		if n.Datasource == "" {
			return errAt(e.pos, "DATASOURCE expects a Data Source name")
		}
	case kw == "TARGET_DATASOURCE":
		n.TargetDatasource = strings.TrimSpace(p.env(e.value()))
		if n.TargetDatasource == "" {
			return errAt(e.pos, "TARGET_DATASOURCE expects a Data Source name")
		}
	case kw == "COPY_SCHEDULE":
		v := strings.TrimSpace(p.env(e.value()))
		if err := ValidateSchedule(v); err != nil {
			return errAt(e.valuePos(), "invalid COPY_SCHEDULE %q: %v", v, err)
		}
		n.CopySchedule = v
	case kw == "COPY_MODE" || kw == "MODE":
		if _, dup := n.KeyPos["COPY_MODE"]; dup && kw == "MODE" {
			return errAt(e.pos, "MODE and COPY_MODE both given in node %q: use COPY_MODE", n.Name)
		}
		if _, dup := n.KeyPos["MODE"]; dup && kw == "COPY_MODE" {
			return errAt(e.pos, "MODE and COPY_MODE both given in node %q: use COPY_MODE", n.Name)
		}
		v := strings.ToLower(strings.TrimSpace(p.env(e.value())))
		switch CopyMode(v) {
		case CopyAppend, CopyReplace:
			n.CopyMode = CopyMode(v)
		default:
			return errAt(e.valuePos(), "invalid %s %q: expected append or replace", kw, e.value())
		}
	case kw == "DEPLOYMENT_METHOD":
		n.DeploymentMethod = strings.TrimSpace(p.env(e.value()))
	case strings.HasPrefix(kw, "ENGINE") || kw == "PARTITION_KEY" || kw == "SORTING_KEY" || kw == "PRIMARY_KEY" || kw == "SAMPLING_KEY" || kw == "TTL":
		return p.engineKey(&n.Engine, e)
	case connectorFeature(kw) == "export":
		n.Export = append(n.Export, Setting{Keyword: kw, Value: p.env(e.value()), Pos: e.pos})
		pipe.OutOfScope = append(pipe.OutOfScope, OutOfScope{Feature: "export", Keyword: kw, Pos: e.pos})
	case connectorFeature(kw) != "":
		return errAt(e.pos, "%s is not valid in a .pipe file (connector keys belong in a .datasource)", kw)
	default:
		return errAt(e.pos, "%s is not valid in a .pipe node", kw)
	}
	return nil
}

// nodeSQL extracts a node's SQL: templated SQL (starting with '%') is only
// stripped, plain SQL is dedented (spec §3.1).
func nodeSQL(e *entry) (string, []int, []int, Pos) {
	if !e.block {
		v := e.value()
		vp := e.valuePos()
		return strings.TrimSpace(v), []int{vp.Line}, []int{vp.Column - 1}, vp
	}
	lines := e.lines
	if len(lines) == 0 {
		return "", nil, nil, e.pos
	}
	first := lines[0]
	pos := Pos{File: first.file, Line: first.num, Column: leadingCol(first.text)}
	nums := make([]int, len(lines))
	for i, l := range lines {
		nums[i] = l.num
	}
	if strings.HasPrefix(strings.TrimSpace(first.text), "%") {
		cols := make([]int, len(lines))
		cols[0] = leadingCol(first.text) - 1
		return strings.TrimSpace(blockText(lines)), nums, cols, pos
	}
	prefix := commonIndent(lines)
	cols := make([]int, len(lines))
	for i, l := range lines {
		if i == 0 {
			cols[i] = leadingCol(l.text) - 1
			continue
		}
		if strings.HasPrefix(l.text, prefix) {
			cols[i] = utf8.RuneCountInString(prefix)
		}
	}
	return strings.TrimSpace(dedent(lines)), nums, cols, pos
}

// commonIndent is the whitespace prefix shared by all non-blank lines.
func commonIndent(lines []srcLine) string {
	prefix := ""
	first := true
	for _, l := range lines {
		if strings.TrimSpace(l.text) == "" {
			continue
		}
		ws := l.text[:len(l.text)-len(strings.TrimLeft(l.text, " \t"))]
		if first {
			prefix, first = ws, false
			continue
		}
		for !strings.HasPrefix(ws, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	return prefix
}

// dedent removes the whitespace prefix common to all lines (textwrap.dedent).
func dedent(lines []srcLine) string {
	prefix := commonIndent(lines)
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.TrimPrefix(l.text, prefix))
	}
	return b.String()
}
