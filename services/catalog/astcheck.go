package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/platform/chsql"
)

// verifyAST is the second check of users' SQL, after Sluice's own analysis has qualified it: it
// asks ClickHouse how it parses the final statement (EXPLAIN AST parses and reads nothing) and
// refuses any table outside database db, any table function outside the allow-list and any
// refused function that ClickHouse sees. It catches what a difference between Sluice's lexer
// and the engine's parser would let through. Servers without EXPLAIN AST (before 20.x) skip it
// (logged once at start).
func (s *Service) verifyAST(ctx context.Context, db, sql string) error {
	if !s.caps.explainAST {
		return nil
	}
	res, err := s.deps.Warehouse.Query(ctx, "EXPLAIN AST "+sql)
	if err != nil {
		return &refError{fmt.Sprintf("ClickHouse cannot parse the query: %s", chMessage(err))}
	}
	lines := make([]string, 0, len(res.Rows))
	for _, r := range res.Rows {
		if len(r) > 0 {
			lines = append(lines, fmt.Sprint(r[0]))
		}
	}
	ctes := map[string]bool{}
	if an, err := chsql.Analyze(sql, nil); err == nil {
		for _, c := range an.CTEs {
			ctes[c.Name] = true
		}
	}
	if probs := astProblems(lines, db, ctes); len(probs) > 0 {
		return &refError{probs[0]}
	}
	return nil
}

// inFunctions are the functions ClickHouse turns IN operators into; their second argument may
// name a table.
var inFunctions = map[string]bool{
	"in": true, "notin": true, "globalin": true, "globalnotin": true,
	"nullin": true, "notnullin": true, "globalnullin": true, "globalnotnullin": true,
}

// astNode is one line of EXPLAIN AST: "<depth spaces>Kind name (alias a) (children n)".
type astNode struct {
	depth      int
	kind, name string
}

func parseASTLine(line string) astNode {
	trimmed := strings.TrimLeft(line, " ")
	n := astNode{depth: len(line) - len(trimmed)}
	n.kind, n.name, _ = strings.Cut(trimmed, " ")
	for _, suffix := range []string{" (children ", " (alias "} {
		if i := strings.Index(n.name, suffix); i >= 0 {
			n.name = n.name[:i]
		}
	}
	if strings.HasPrefix(n.name, "(children ") {
		n.name = ""
	}
	return n
}

// astProblems checks the lines of EXPLAIN AST of a statement qualified for database db; ctes
// are the names of its CTEs, which stand unqualified.
func astProblems(lines []string, db string, ctes map[string]bool) []string {
	nodes := make([]astNode, len(lines))
	for i, l := range lines {
		nodes[i] = parseASTLine(l)
	}
	var probs []string
	table := func(name, where string) {
		if strings.HasPrefix(name, db+".") || ctes[name] {
			return
		}
		if sys, ok := strings.CutPrefix(name, "system."); ok && systemTables[sys] && where == "table" {
			return
		}
		probs = append(probs, fmt.Sprintf("%s %s is outside the workspace (ClickHouse reads it as a table of another database)", where, name))
	}
	// arg returns the index of the k-th argument (0-based) of the function at i.
	arg := func(i, k int) int {
		d := nodes[i].depth
		if i+1 >= len(nodes) || nodes[i+1].kind != "ExpressionList" || nodes[i+1].depth != d+1 {
			return -1
		}
		seen := -1
		for j := i + 2; j < len(nodes) && nodes[j].depth > d+1; j++ {
			if nodes[j].depth == d+2 {
				if seen++; seen == k {
					return j
				}
			}
		}
		return -1
	}
	for i, n := range nodes {
		switch n.kind {
		case "TableIdentifier":
			table(n.name, "table")
		case "Function":
			lower := strings.ToLower(n.name)
			parent := ""
			for j := i - 1; j >= 0; j-- {
				if nodes[j].depth == n.depth-1 {
					parent = nodes[j].kind
					break
				}
			}
			switch {
			case parent == "TableExpression":
				if !allowedTableFunctions[lower] {
					probs = append(probs, fmt.Sprintf("table function %s() is refused (allowed table functions: %s)", n.name, allowedTableFunctionList))
				}
			case inFunctions[lower]:
				if j := arg(i, 1); j >= 0 && nodes[j].kind == "Identifier" {
					table(nodes[j].name, "IN")
				}
			case lower == "joinget" || lower == "joingetornull":
				j := arg(i, 0)
				switch {
				case j >= 0 && nodes[j].kind == "Literal" && strings.HasPrefix(nodes[j].name, "'"+db+"."):
				case j >= 0 && nodes[j].kind == "Identifier" && strings.HasPrefix(nodes[j].name, db+"."):
				default:
					probs = append(probs, fmt.Sprintf("%s() must name a Data Source of this workspace", n.name))
				}
			case strings.HasPrefix(lower, "dictget") || lower == "dicthas" || lower == "dictisin":
				probs = append(probs, fmt.Sprintf("%s(): dictionaries are not supported in workspaces", n.name))
			default:
				if msg := refusedFunction(n.name); msg != "" {
					probs = append(probs, msg)
				}
			}
		}
	}
	return probs
}
