package catalog

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/platform/chsql"
	"github.com/sluicehq/sluice/services/catalog/template"
)

// allowedTableFunctions are the table functions users' SQL may call: they read nothing outside
// ClickHouse's own memory. Every other one (file, url, s3, remote, mysql, executable, ...) is
// refused, at push time and at query time.
var allowedTableFunctions = map[string]bool{
	"numbers": true, "numbers_mt": true, "zeros": true, "zeros_mt": true, "values": true,
	"generaterandom": true, "null": true, "generate_series": true, "generateseries": true,
}

// allowedTableFunctionList is allowedTableFunctions for messages.
const allowedTableFunctionList = "numbers, numbers_mt, zeros, zeros_mt, values, generateRandom, generate_series, null"

// allowedSettings are what a SETTINGS clause of a pipe node may set: settings that change how
// a query computes its result, never what it may read or how much (readonly, max_*, limits
// and allow_* are refused). `sluice sql` refuses every SETTINGS clause: a SETTINGS clause
// inside a subquery overrides the limits Sluice puts on the whole query even under readonly=1
// (measured on chDB 26.7 and ClickHouse 18.16).
var allowedSettings = map[string]bool{
	"join_use_nulls": true, "join_algorithm": true, "join_default_strictness": true,
	"any_join_distinct_right_table_keys": true, "aggregate_functions_null_for_empty": true,
	"group_by_use_nulls": true, "joined_subquery_requires_alias": true, "cast_keep_nullable": true,
	"optimize_read_in_order": true, "optimize_aggregation_in_order": true,
	"enable_analyzer": true, "allow_experimental_analyzer": true, "prefer_column_name_to_alias": true,
	"count_distinct_implementation": true, "date_time_input_format": true, "transform_null_in": true,
}

// systemTables are the system tables users' SQL may read: generators that show nothing of the
// server or of other workspaces. They are read as they are, not qualified.
var systemTables = map[string]bool{"numbers": true, "numbers_mt": true, "one": true, "zeros": true, "zeros_mt": true}

// serviceDataSources are the service Data Sources every workspace can read; `tinybird.<name>`
// is accepted for them as in the hosted platform. Each is a view in the workspace's database
// over Sluice's own table (see platform/opsevents).
var serviceDataSources = map[string]bool{"datasources_ops_log": true, "jobs_log": true}

// unprovidedServiceDataSources are the hosted platform's other service Data Sources, with why
// Sluice has no data for them; a pipe that reads one is refused saying so.
var unprovidedServiceDataSources = map[string]string{
	"pipe_stats_rt":         "Sluice publishes no API endpoints, so there are no endpoint requests to count",
	"pipe_stats":            "Sluice publishes no API endpoints, so there are no endpoint requests to count",
	"bi_stats_rt":           "Sluice has no BI connector",
	"bi_stats":              "Sluice has no BI connector",
	"block_log":             "Sluice ingests no files or URLs in blocks",
	"datasources_storage":   "storage is ClickHouse's own: read system.parts on the server",
	"endpoint_errors":       "Sluice publishes no API endpoints",
	"kafka_ops_log":         "Sluice runs no Kafka connector",
	"sinks_ops_log":         "Sluice runs no sink pipes",
	"data_transfer":         "Sluice runs no sink pipes or exports",
	"query_validator_log":   "Sluice validates queries when they are pushed, not on a schedule",
	"llm_usage":             "Sluice has no AI features",
	"releases_log":          "Sluice has no releases",
	"datasources_ops_stats": "Sluice keeps the events themselves in datasources_ops_log: aggregate them",
}

// composer turns a node's SQL into a query ClickHouse can run in one database: the template is
// rendered, references to earlier nodes and to other pipes become subqueries, and Data Sources
// are qualified with the database. Anything else a query names is refused.
type composer struct {
	p      *project
	db     string
	params map[string]string
	opts   template.RenderOptions
	// stack guards against pipes that read each other.
	stack []string
}

// refError is a reference users' SQL may not make.
type refError struct{ msg string }

func (e *refError) Error() string { return e.msg }

func (c *composer) node(n *nodeDef) (string, error) {
	key := n.pipe.pipe.Name + "." + n.node.Name
	for _, s := range c.stack {
		if s == key {
			return "", &refError{fmt.Sprintf("pipes read each other: %s", strings.Join(append(c.stack, key), " -> "))}
		}
	}
	c.stack = append(c.stack, key)
	defer func() { c.stack = c.stack[:len(c.stack)-1] }()

	res, err := n.tmpl.Execute(c.params, c.opts)
	if err != nil {
		return "", err
	}
	// What ClickHouse runs is the normalized text (no comments): exactly what was analysed.
	sql, err := chsql.Normalize(res.SQL)
	if err != nil {
		return "", &refError{fmt.Sprintf("node %s: cannot read its SQL: %v", n.node.Name, err)}
	}
	earlier := earlierNodes(n)
	an, err := chsql.Analyze(sql, earlier)
	if err != nil {
		return "", fmt.Errorf("cannot read the node's SQL: %w", err)
	}
	if an.Statements > 1 {
		return "", &refError{"a node holds one query; remove the ';' and what follows"}
	}
	if probs := checkStatement(an, true); len(probs) > 0 {
		return "", &refError{fmt.Sprintf("node %s: %s", n.node.Name, probs[0].msg)}
	}
	return an.Rewrite(func(ref chsql.TableRef) (string, error) {
		return c.resolve(n, ref)
	})
}

// resolve gives the replacement text of one reference of node n.
func (c *composer) resolve(n *nodeDef, ref chsql.TableRef) (string, error) {
	switch ref.Kind {
	case chsql.RefNode:
		if n == nil {
			return "", &refError{fmt.Sprintf("unknown node %q", ref.Name)}
		}
		dep := n.pipe.nodeNamed(ref.Name)
		sql, err := c.node(dep)
		if err != nil {
			return "", err
		}
		return ref.Subquery(sql), nil
	case chsql.RefTableFunction:
		if err := checkTableFunction(ref); err != nil {
			return "", err
		}
		return ref.Name + "(" + ref.Args + ")", nil
	case chsql.RefTable, chsql.RefJoinGet, chsql.RefDictionary:
		name, err := c.p.checkTableRef(ref)
		if err != nil {
			return "", err
		}
		if name == "" { // an allowed system table
			return chsql.QuoteIdent("system") + "." + chsql.QuoteIdent(strings.ToLower(ref.Name)), nil
		}
		if pd, ok := c.p.pipes[name]; ok && ref.Kind == chsql.RefTable {
			out := pd.outputNode()
			if out == nil {
				return "", &refError{fmt.Sprintf("pipe %s has no nodes", name)}
			}
			sql, err := c.node(out)
			if err != nil {
				return "", err
			}
			return ref.Subquery(sql), nil
		}
		ref.Name = name
		return ref.Qualified(c.db), nil
	default:
		_, err := c.p.checkTableRef(ref)
		if err == nil {
			err = &refError{fmt.Sprintf("%s %q is not allowed in pipes and queries", ref.Kind, ref.Name)}
		}
		return "", err
	}
}

// checkTableFunction refuses table functions outside the allow-list.
func checkTableFunction(ref chsql.TableRef) error {
	if allowedTableFunctions[strings.ToLower(ref.Name)] {
		return nil
	}
	return &refError{fmt.Sprintf("table function %s() is refused: pipes and queries may only read their workspace's Data Sources (allowed table functions: %s)", ref.Name, allowedTableFunctionList)}
}

// sqlProblem is something users' SQL may not do, at a byte offset of the SQL.
type sqlProblem struct {
	off int
	msg string
}

// checkStatement applies the rules that do not depend on what the workspace holds: one
// read-only query (for a node, a SELECT), no function that reaches outside the workspace, no
// FORMAT clause, and SETTINGS only from allowedSettings in a node (none in `sluice sql`).
func checkStatement(an *chsql.Analysis, node bool) []sqlProblem {
	var probs []sqlProblem
	if node && an.Statements > 1 {
		probs = append(probs, sqlProblem{0, "a node holds one query; remove the ';' and what follows"})
	}
	if node && an.Kind != chsql.KindSelect && an.Kind != chsql.KindWith && an.Kind != chsql.KindEmpty {
		probs = append(probs, sqlProblem{0, fmt.Sprintf("a node holds one SELECT query, not %s", an.Kind)})
	}
	for _, f := range an.Functions {
		if msg := refusedFunction(f.Name); msg != "" {
			probs = append(probs, sqlProblem{f.Start, msg})
		}
	}
	for _, f := range an.Formats {
		probs = append(probs, sqlProblem{f.Start, fmt.Sprintf("FORMAT %s is refused: Sluice chooses the result format (sluice sql --output)", f.Name)})
	}
	for _, st := range an.Settings {
		switch {
		case !node:
			probs = append(probs, sqlProblem{st.Start, fmt.Sprintf("SETTINGS %s is refused: sluice sql runs with Sluice's limits (use --max-rows and --timeout)", st.Name)})
		case !allowedSettings[strings.ToLower(st.Name)]:
			probs = append(probs, sqlProblem{st.Start, fmt.Sprintf("SETTINGS %s is refused: a node may only set settings that shape its result (%s)", st.Name, strings.Join(sortedNames(allowedSettings), ", "))})
		}
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].off < probs[j].off })
	return probs
}

// refusedFunction says why a function may not be called from users' SQL, or "".
func refusedFunction(name string) string {
	lower := strings.ToLower(name)
	if why := chsql.OutsideFunction(lower); why != "" {
		return fmt.Sprintf("%s(): refused, %s; pipes and queries may only read their workspace's Data Sources", name, why)
	}
	if strings.HasPrefix(lower, "__") {
		return fmt.Sprintf("%s(): internal ClickHouse functions are refused", name)
	}
	if lower != "format" && chsql.IsKnownTableFunction(lower) && !allowedTableFunctions[lower] {
		return fmt.Sprintf("%s(): refused, it reads outside the workspace (allowed table functions: %s)", name, allowedTableFunctionList)
	}
	return ""
}

// checkTableRef returns the resource a table reference names, or why it may not be read.
func (p *project) checkTableRef(ref chsql.TableRef) (string, error) {
	switch {
	case ref.Kind == chsql.RefOutfile:
		return "", &refError{fmt.Sprintf("INTO OUTFILE %q is refused: pipes and queries cannot write files", ref.Name)}
	case ref.Kind == chsql.RefQueryParameter:
		return "", &refError{fmt.Sprintf("%s as a table is refused: name the Data Source", ref.Name)}
	case ref.Kind == chsql.RefDatabase:
		return "", &refError{fmt.Sprintf("database %s: pipes and queries only see their own workspace", ref.Name)}
	case ref.Kind == chsql.RefTableFunction:
		return "", checkTableFunction(ref)
	case ref.Kind == chsql.RefDictionary:
		return "", &refError{fmt.Sprintf("dictionary %s: dictionaries are not supported in workspaces (use a JOIN, or joinGet on a Join-engine Data Source)", qualifiedRefName(ref))}
	case ref.Dynamic:
		return "", &refError{"joinGet's first argument must name a Join-engine Data Source of this workspace as a string literal ('name')"}
	}
	name := ref.Name
	switch db := ref.Database; {
	case db == "" || db == p.ws.Database:
	case strings.EqualFold(db, "tinybird") && serviceDataSources[name]:
	case strings.EqualFold(db, "tinybird"):
		if why, ok := unprovidedServiceDataSources[name]; ok {
			return "", &refError{fmt.Sprintf("tinybird.%s is a service Data Source of the hosted platform that Sluice does not provide: %s (Sluice provides tinybird.datasources_ops_log and tinybird.jobs_log)", name, why)}
		}
		return "", &refError{fmt.Sprintf("tinybird.%s is not a service Data Source (Sluice provides tinybird.datasources_ops_log and tinybird.jobs_log)", name)}
	case strings.EqualFold(db, "system") && systemTables[strings.ToLower(name)] && ref.Kind == chsql.RefTable:
		return "", nil
	case strings.EqualFold(db, "system"):
		return "", &refError{fmt.Sprintf("system.%s: system tables are not readable from pipes and queries (they would show other workspaces; system.numbers, numbers_mt, one, zeros and zeros_mt are)", name)}
	default:
		return "", &refError{fmt.Sprintf("%s.%s is in another database: pipes and queries may only read their workspace's Data Sources", db, name)}
	}
	if _, ok := p.datasources[name]; ok {
		return name, nil
	}
	if p.quarantineOf(name) != "" && ref.Kind == chsql.RefTable {
		return name, nil
	}
	if _, ok := p.pipes[name]; ok && ref.Kind == chsql.RefTable {
		return name, nil
	}
	if serviceDataSources[name] {
		return name, nil
	}
	if file, ok := p.broken[name]; ok {
		return "", &refError{fmt.Sprintf("%s cannot be read: its file %s has errors (see them)", name, file)}
	}
	return "", &refError{fmt.Sprintf("unknown Data Source or Pipe %q: it is neither in this push nor deployed in workspace %s", name, p.ws.Name)}
}

func qualifiedRefName(ref chsql.TableRef) string {
	if ref.Database != "" {
		return ref.Database + "." + ref.Name
	}
	return ref.Name
}

func earlierNodes(n *nodeDef) map[string]bool {
	out := map[string]bool{}
	for _, m := range n.pipe.nodes {
		if m == n {
			break
		}
		out[m.node.Name] = true
	}
	return out
}
