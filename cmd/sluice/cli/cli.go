// Package cli is the `sluice` command: a client of sluiced's gRPC API only. It links no
// server code and no ClickHouse library.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// DefaultAddr is where sluiced serves by default.
const DefaultAddr = "127.0.0.1:7181"

// ExitError carries a process exit code with its message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// usageError is a mistake in the command line (exit code 2).
func usageError(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

// Globals are the flags every verb accepts.
type Globals struct {
	Addr      string
	Workspace string
	Output    string
	Timeout   time.Duration
	// Token is sent with every call; empty: the token saved by `sluice auth` for the address,
	// or the operator token of a `sluiced -dev` on this machine.
	Token string
	// TLS connects with TLS; TLSCA verifies the server (default: system roots); TLSCert and
	// TLSKey are a client certificate for servers that require one.
	TLS     bool
	TLSCA   string
	TLSCert string
	TLSKey  string
	// Yes is the hosted CLI's --yes: Sluice never asks for confirmation, so it changes nothing.
	Yes bool
}

func (g *Globals) register(fs *flag.FlagSet) {
	addr := os.Getenv("SLUICE_ADDR")
	if addr == "" {
		addr = DefaultAddr
	}
	fs.StringVar(&g.Addr, "addr", addr, "sluiced gRPC address; a comma list in split mode (env SLUICE_ADDR)")
	fs.StringVar(&g.Workspace, "workspace", os.Getenv("SLUICE_WORKSPACE"), "workspace (env SLUICE_WORKSPACE); default: the token's")
	fs.StringVar(&g.Output, "output", "text", "output format: text or json")
	fs.DurationVar(&g.Timeout, "timeout", 30*time.Second, "how long a call may take (not --wait or --follow)")
	fs.StringVar(&g.Token, "token", os.Getenv("SLUICE_TOKEN"), "token sent with every call (env SLUICE_TOKEN); default: the one `sluice auth` saved for --addr")
	tlsOn := os.Getenv("SLUICE_TLS")
	fs.BoolVar(&g.TLS, "tls", tlsOn == "1" || strings.EqualFold(tlsOn, "true"), "connect with TLS, verifying the server with the system's roots (env SLUICE_TLS=1)")
	fs.StringVar(&g.TLSCA, "tls-ca", os.Getenv("SLUICE_TLS_CA"), "CA certificates (PEM) that verify the server; implies --tls (env SLUICE_TLS_CA)")
	fs.StringVar(&g.TLSCert, "tls-cert", os.Getenv("SLUICE_TLS_CERT"), "client certificate (PEM) for servers that require one; implies --tls")
	fs.StringVar(&g.TLSKey, "tls-key", os.Getenv("SLUICE_TLS_KEY"), "private key (PEM) of --tls-cert")
	fs.BoolVar(&g.Yes, "yes", false, "accepted for the hosted CLI's scripts: sluice never asks for confirmation")
}

// hostedOnlyFlags are flags of the hosted platform's CLI that sluice does not have, with what
// to do instead; they get that answer rather than a bare "flag provided but not defined".
var hostedOnlyFlags = map[string]string{
	"populate":                 "push does not populate: push, then run `sluice pipe populate NAME --wait`",
	"subset":                   "populate a part with `sluice pipe populate NAME --sql-condition SQL`",
	"unlink-on-populate-error": "a failed populate leaves the view as it was; nothing to unlink",
	"fixtures":                 "load fixtures with `sluice datasource append NAME FILE`",
	"no-check":                 "push always validates: a refused push changes nothing",
	"debug":                    "the server logs every step; use --output json for machine-readable output",
	"user_token":               "workspaces are made with the operator token: sluice workspace create NAME --token OPERATOR_TOKEN",
	"host":                     "use --addr (or SLUICE_ADDR)",
	"semver":                   "Sluice has no releases: every push is applied to the workspace",
	"workspace_map":            "push to one workspace with --workspace",
	"workspace-map":            "push to one workspace with --workspace",
	"on-demand-compute":        "copies run on the server's ClickHouse",
	"unlink":                   "remove a pipe by pushing without it (--prune)",
}

// flagAnswer explains a flag of the hosted CLI that sluice does not have, or returns "".
func flagAnswer(err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return ""
	}
	name = strings.TrimLeft(name, "-")
	if why, ok := hostedOnlyFlags[name]; ok {
		return fmt.Sprintf("--%s is a flag of the hosted platform's CLI that sluice does not have: %s", name, why)
	}
	return ""
}

func (g *Globals) validate() error {
	if g.Output != "text" && g.Output != "json" {
		return usageError("--output: %q is not text or json", g.Output)
	}
	if (g.TLSCert == "") != (g.TLSKey == "") {
		return usageError("--tls-cert and --tls-key go together")
	}
	return nil
}

// Env is what a command runs with.
type Env struct {
	Stdout, Stderr io.Writer
	Globals        Globals
	// IsTerminal reports whether Stdout is a terminal (progress bars then).
	IsTerminal bool
	// conns are the command's connections, by service (connect); Run closes them.
	conns map[string]*grpc.ClientConn
}

func (e *Env) printJSON(v any) error {
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// command is a verb, or a group of verbs.
type command struct {
	name  string
	short string
	subs  []*command
	// flags registers the verb's own flags; run gets the remaining arguments.
	flags func(fs *flag.FlagSet)
	run   func(ctx context.Context, env *Env, args []string) error
}

func root() *command {
	return &command{name: "sluice", subs: []*command{
		statusCommand(),
		authCommand(),
		workspaceCommand(),
		tokenCommand(),
		pushCommand(),
		datasourceCommand(),
		pipeCommand(),
		graphCommand(),
		sqlCommand(),
		opsLogCommand(),
		jobCommand(),
	}}
}

// Run executes the command line and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, isTerminal bool) int {
	env := &Env{Stdout: stdout, Stderr: stderr, IsTerminal: isTerminal}
	err := dispatch(ctx, root(), args, env, nil)
	env.closeConns()
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "sluice: %v\n", err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

func dispatch(ctx context.Context, c *command, args []string, env *Env, path []string) error {
	path = append(path, c.name)
	if c.run == nil {
		// A group: the first argument that is not a flag names the sub-command; global flags may
		// stand before it.
		var pre []string
		for len(args) > 0 && strings.HasPrefix(args[0], "-") {
			pre = append(pre, args[0])
			if !strings.Contains(args[0], "=") && len(args) > 1 && takesValue(args[0]) {
				pre = append(pre, args[1])
				args = args[1:]
			}
			args = args[1:]
		}
		if len(args) == 0 || args[0] == "help" {
			printUsage(env.Stderr, c, path)
			if len(args) == 0 {
				return usageError("%s: a command is required", strings.Join(path, " "))
			}
			return nil
		}
		for _, s := range c.subs {
			if s.name == args[0] {
				return dispatch(ctx, s, append(pre, args[1:]...), env, path)
			}
		}
		printUsage(env.Stderr, c, path)
		return usageError("%s: unknown command %q", strings.Join(path, " "), args[0])
	}
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	env.Globals.register(fs)
	if c.flags != nil {
		c.flags(fs)
	}
	// Flags may come before or after positional arguments.
	var positional []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			if answer := flagAnswer(err); answer != "" {
				return &ExitError{Code: 2, Err: errors.New(answer)}
			}
			return &ExitError{Code: 2, Err: err}
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if err := env.Globals.validate(); err != nil {
		return err
	}
	return c.run(ctx, env, positional)
}

// takesValue reports whether a global flag given as a separate word takes the next word.
func takesValue(flagWord string) bool {
	name := strings.TrimLeft(flagWord, "-")
	switch name {
	case "addr", "workspace", "output", "timeout", "token", "tls-ca", "tls-cert", "tls-key":
		return true
	}
	return false
}

func printUsage(w io.Writer, c *command, path []string) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", strings.Join(path, " "))
	subs := append([]*command(nil), c.subs...)
	sort.Slice(subs, func(i, j int) bool { return subs[i].name < subs[j].name })
	for _, s := range subs {
		fmt.Fprintf(w, "  %-12s %s\n", s.name, s.short)
	}
}
