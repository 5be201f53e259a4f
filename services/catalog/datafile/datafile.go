// Package datafile parses the datafiles of a Sluice project — .datasource,
// .pipe and .incl files — into typed resources, as DATAFILES-SPEC.md §1–3
// describes, and generates ClickHouse DDL for Data Sources.
//
// The parser is purely syntactic: it checks what one file can tell (known
// keywords, block structure, column syntax, node types, copy modes, cron
// schedules) and leaves cross-file checks (does the target exist, do columns
// match) to the catalog's validation step. Connector keys (KAFKA_*, IMPORT_*,
// EXPORT_*) are parsed and kept, and listed in OutOfScope, so that validation
// can refuse them precisely instead of the parser failing.
//
// Every error is a *Error naming file, line and column.
package datafile

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Pos is a position in a datafile. Line and Column are 1-based; Column counts
// runes.
type Pos struct {
	File   string
	Line   int
	Column int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column) }

// Error is a datafile error at a position. Error() is "file:line:col: message".
type Error struct {
	File   string
	Line   int
	Column int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg) }

// Pos returns the error's position.
func (e *Error) Pos() Pos { return Pos{File: e.File, Line: e.Line, Column: e.Column} }

func errAt(p Pos, format string, args ...any) *Error {
	if p.Line < 1 {
		p.Line = 1
	}
	if p.Column < 1 {
		p.Column = 1
	}
	return &Error{File: p.File, Line: p.Line, Column: p.Column, Msg: fmt.Sprintf(format, args...)}
}

// Kind is the kind of a datafile, from its extension.
type Kind int

const (
	KindUnknown Kind = iota
	KindDataSource
	KindPipe
	KindInclude
)

func (k Kind) String() string {
	switch k {
	case KindDataSource:
		return "datasource"
	case KindPipe:
		return "pipe"
	case KindInclude:
		return "incl"
	}
	return "unknown"
}

// KindOf returns the kind of a datafile from its extension.
func KindOf(path string) Kind {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".datasource":
		return KindDataSource
	case ".pipe":
		return KindPipe
	case ".incl":
		return KindInclude
	}
	return KindUnknown
}

// Options are the parser's injected dependencies. Parsing is a pure function
// of (path, source, Options).
type Options struct {
	// ReadFile reads an INCLUDEd file. Paths are resolved relative to the
	// including file's folder before the call. Nil makes INCLUDE an error.
	ReadFile func(path string) ([]byte, error)
	// Env holds the variables for $VAR / ${VAR} substitution in keyword
	// values; unknown variables are left intact.
	Env map[string]string
}

// File is one parsed datafile; exactly one of DataSource, Pipe, Include is set.
type File struct {
	Path       string
	Kind       Kind
	DataSource *DataSource
	Pipe       *Pipe
	Include    *Include
}

// Include is a parsed .incl file: a fragment checked for known keywords and
// block structure only, since its meaning depends on the including file.
type Include struct {
	Path     string
	Keywords []KeywordUse
}

// KeywordUse records one keyword occurrence and where it is.
type KeywordUse struct {
	Keyword string
	Pos     Pos
}

// Token is a TOKEN line: an access token granted on the resource.
type Token struct {
	Name       string
	Permission string // upper-case as written: READ, APPEND, ...
	Pos        Pos
}

// Tags are the parsed TAGS value.
type Tags struct {
	// Operational holds "k=v" entries (e.g. backfill_column=timestamp), sent
	// as parameters of the resource.
	Operational map[string]string
	// Filtering holds the other entries, used to group resources.
	Filtering []string
	Pos       Pos
}

// Setting is a keyword the parser keeps verbatim (connector and export keys).
type Setting struct {
	Keyword string
	Value   string
	Pos     Pos
}

// OutOfScope is a feature the file uses that Sluice parses but does not run
// (Kafka, import and export connectors). Validation turns these into precise
// errors or warnings.
type OutOfScope struct {
	Feature string // "kafka", "import", "export"
	Keyword string
	Pos     Pos
}

// DataSource is a parsed .datasource file.
type DataSource struct {
	// Name is the resource name: the file's base name, with "__v<n>" appended
	// when VERSION n is given.
	Name        string
	BaseName    string
	Version     *int
	Path        string
	Pos         Pos
	Description string
	Columns     []Column
	Indexes     []Index
	Engine      Engine
	Tokens      []Token
	Tags        Tags
	SharedWith  []string
	// ForwardQuery is the FORWARD_QUERY block (Forward deployments), kept verbatim.
	ForwardQuery    string
	ForwardQueryPos Pos
	// Connector holds KAFKA_* and IMPORT_* keys.
	Connector  []Setting
	OutOfScope []OutOfScope
	// uses are the column names the columns' expressions and the indexes read.
	uses []ColumnUse
}

// Column is one SCHEMA column. Every text field holds what Sluice emits: parsed and
// re-written from its tokens, expressions analysed and normalized (see ddlparts.go).
type Column struct {
	Name string
	// Type is the ClickHouse type without a Nullable(...) wrapper; empty when
	// the column only has a default expression.
	Type     string
	Nullable bool
	// NotNull is set when NOT NULL was written.
	NotNull bool
	// DefaultKind is DEFAULT, MATERIALIZED, ALIAS or EPHEMERAL, or empty.
	DefaultKind string
	DefaultExpr string
	// Codec is the codec list inside CODEC(...), e.g. "ZSTD(1)".
	Codec string
	// JSONPath is the `json:<path>` binding, e.g. "$.a.b", without "json:".
	JSONPath string
	Pos      Pos
}

// SQLType is the column's full ClickHouse type, with Nullable(...) restored.
func (c Column) SQLType() string {
	if c.Nullable && c.Type != "" {
		return "Nullable(" + c.Type + ")"
	}
	return c.Type
}

// Index is one INDEXES line.
type Index struct {
	Name string
	// Expr is the analysed expression, Type the index type with its literal arguments.
	Expr        string
	Type        string
	Granularity string
	Pos         Pos
}

// Engine holds the ENGINE and ENGINE_* keys, parsed: keys and TTL are analysed expressions,
// settings literal pairs, engine arguments column names (see ddlparts.go).
type Engine struct {
	// Name is the canonical engine name (e.g. ReplacingMergeTree); empty means
	// the default, MergeTree.
	Name         string
	PartitionKey string
	SortingKey   string
	PrimaryKey   string
	SamplingKey  string
	TTL          string
	Settings     []EngineSetting
	// Ver, IsDeleted, Sign and Version are column names (engine arguments).
	Ver       string
	IsDeleted string
	Sign      string
	Version   string
	// Columns are SummingMergeTree's columns to sum.
	Columns        []string
	JoinStrictness string
	JoinType       string
	KeyColumns     []string
	// Pos is the position of the ENGINE keyword, or of the first ENGINE_* key.
	Pos Pos
	// Set reports whether any engine key was given.
	Set bool
	// uses are the column names the keys, the TTL and the arguments read, by key.
	uses map[string][]ColumnUse
}

// NodeType is a node's TYPE.
type NodeType string

const (
	NodeStandard     NodeType = "standard"
	NodeEndpoint     NodeType = "endpoint"
	NodeMaterialized NodeType = "materialized"
	NodeCopy         NodeType = "copy"
	NodeSink         NodeType = "sink"
)

// CopyMode is a copy node's COPY_MODE.
type CopyMode string

const (
	CopyAppend  CopyMode = "append"
	CopyReplace CopyMode = "replace"
)

// OnDemand is the COPY_SCHEDULE value of a copy that only runs when asked.
const OnDemand = "@on-demand"

// Pipe is a parsed .pipe file.
type Pipe struct {
	Name        string
	BaseName    string
	Version     *int
	Path        string
	Pos         Pos
	Description string
	Tokens      []Token
	Tags        Tags
	Nodes       []Node
	OutOfScope  []OutOfScope
}

// Node is one NODE of a pipe.
type Node struct {
	Name        string
	Description string
	// SQL is the node's query. Templated SQL (first non-blank character '%')
	// is kept as written apart from surrounding whitespace; plain SQL is
	// dedented.
	SQL string
	// SQLLines maps each line of SQL (index 0 = first line) to its line in the
	// file, so that errors inside the SQL can be reported in file terms.
	SQLLines []int
	// sqlCols holds, per SQL line, how many leading characters of the file
	// line were removed (indentation).
	sqlCols []int
	SQLPos  Pos
	// Type is the node's TYPE; NodeStandard when not given.
	Type NodeType
	// TypeSet reports whether TYPE was written.
	TypeSet          bool
	Datasource       string
	TargetDatasource string
	// CopySchedule is "@on-demand" or a 5-field cron; empty when not given.
	CopySchedule     string
	CopyMode         CopyMode
	DeploymentMethod string
	// Engine holds ENGINE* keys given on a materialized node.
	Engine Engine
	Tags   Tags
	// Export holds the EXPORT_* keys of a sink node.
	Export []Setting
	Pos    Pos
	// KeyPos records where each node key was written (upper-case keyword).
	KeyPos map[string]Pos
}

// Templated reports whether the node's SQL is a template (starts with '%').
func (n *Node) Templated() bool { return strings.HasPrefix(strings.TrimSpace(n.SQL), "%") }

// SQLPosition maps a 1-based (line, column) inside SQL — a template error's
// position, or an offset chsql reports — to a file position.
func (n *Node) SQLPosition(line, col int) Pos {
	p := n.SQLPos
	if line >= 1 && line <= len(n.SQLLines) {
		p.Line = n.SQLLines[line-1]
		if col >= 1 {
			p.Column = col
			if line-1 < len(n.sqlCols) {
				p.Column += n.sqlCols[line-1]
			}
		}
	}
	return p
}

// NodeNamed returns the node with the given name, or nil.
func (p *Pipe) NodeNamed(name string) *Node {
	for i := range p.Nodes {
		if p.Nodes[i].Name == name {
			return &p.Nodes[i]
		}
	}
	return nil
}

// Parse parses one datafile; its kind comes from the path's extension.
func Parse(path string, src []byte, opts Options) (*File, error) {
	f := &File{Path: path, Kind: KindOf(path)}
	switch f.Kind {
	case KindDataSource:
		ds, err := ParseDataSource(path, src, opts)
		if err != nil {
			return nil, err
		}
		f.DataSource = ds
	case KindPipe:
		p, err := ParsePipe(path, src, opts)
		if err != nil {
			return nil, err
		}
		f.Pipe = p
	case KindInclude:
		inc, err := ParseInclude(path, src, opts)
		if err != nil {
			return nil, err
		}
		f.Include = inc
	default:
		return nil, errAt(Pos{File: path, Line: 1, Column: 1}, "unknown datafile extension %q: expected .datasource, .pipe or .incl", filepath.Ext(path))
	}
	return f, nil
}

// ResourceName is the resource name of a datafile path: its base name
// without extension.
func ResourceName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

type parser struct {
	path string
	opts Options
}

// ParseInclude parses a .incl file as a fragment.
func ParseInclude(path string, src []byte, opts Options) (*Include, error) {
	p := &parser{path: path, opts: opts}
	entries, err := p.scan(splitLines(path, src))
	if err != nil {
		return nil, err
	}
	inc := &Include{Path: path}
	for _, e := range entries {
		inc.Keywords = append(inc.Keywords, KeywordUse{Keyword: e.keyword, Pos: e.pos})
	}
	return inc, nil
}

// SQLOffsetPosition maps a byte offset in SQL (e.g. a chsql reference's
// Start, for SQL that is not a template) to a file position.
func (n *Node) SQLOffsetPosition(off int) Pos {
	if off < 0 {
		off = 0
	}
	if off > len(n.SQL) {
		off = len(n.SQL)
	}
	line := 1 + strings.Count(n.SQL[:off], "\n")
	start := strings.LastIndexByte(n.SQL[:off], '\n') + 1
	return n.SQLPosition(line, utf8.RuneCountInString(n.SQL[start:off])+1)
}
