package cli

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
)

// Verbs of access: `sluice auth`, `sluice workspace create|ls|rm`, `sluice token
// ls|create|rm|rotate`. A secret (a new token, a rotated one, a new workspace's admin token)
// is the only thing printed on stdout, so that `T=$(sluice token create ...)` keeps it; what it
// is goes to stderr. With --output json, stdout has the whole response.

func kindWordOf(k catalogv1.TokenKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "TOKEN_KIND_"))
}

func describeToken(t *catalogv1.Token) string {
	where := "workspace " + t.GetWorkspace()
	if t.GetWorkspace() == "" {
		where = "the instance"
	}
	scopes := strings.Join(t.GetScopes(), ", ")
	switch t.GetKind() {
	case catalogv1.TokenKind_TOKEN_KIND_OPERATOR:
		scopes = "everything, on every workspace"
	case catalogv1.TokenKind_TOKEN_KIND_SERVICE:
		scopes = "everything (service credential)"
	}
	return fmt.Sprintf("%s token %q of %s (%s)", kindWordOf(t.GetKind()), t.GetName(), where, scopes)
}

func authCommand() *command {
	var forget bool
	return &command{
		name:  "auth",
		short: "check a token and save it for --addr (read from --token, SLUICE_TOKEN or stdin)",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&forget, "forget", false, "remove the token saved for --addr")
		},
		run: func(ctx context.Context, env *Env, _ []string) error {
			creds, err := loadCredentials()
			if err != nil {
				return fmt.Errorf("read saved credentials: %w", err)
			}
			addrs := env.Globals.addrs()
			if forget {
				for _, a := range addrs {
					delete(creds.Servers, normalizeAddr(a))
				}
				path, err := saveCredentials(creds)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stderr, "forgot the token of %s (%s)\n", env.Globals.Addr, path)
				return nil
			}
			if env.Globals.Token == "" {
				tok, err := readTokenFromStdin(env)
				if err != nil {
					return err
				}
				env.Globals.Token = tok
			}
			client, err := tokenClient(ctx, env)
			if err != nil {
				return err
			}
			resp, err := call(ctx, env, client.GetCurrentToken, &catalogv1.GetCurrentTokenRequest{})
			if err != nil {
				return callError(err)
			}
			g := env.Globals
			for _, a := range addrs {
				creds.Servers[normalizeAddr(a)] = savedServer{Token: g.Token, TLS: g.TLS || g.TLSCA != "", TLSCA: absPath(g.TLSCA)}
			}
			path, err := saveCredentials(creds)
			if err != nil {
				return fmt.Errorf("save the token: %w", err)
			}
			if g.Output == "json" {
				return env.printProto(resp)
			}
			fmt.Fprintf(env.Stdout, "authenticated to %s with the %s; saved in %s\n", g.Addr, describeToken(resp.GetToken()), path)
			return nil
		},
	}
}

func readTokenFromStdin(env *Env) (string, error) {
	if env.IsTerminal {
		fmt.Fprint(env.Stderr, "Token: ")
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", usageError("auth: no token: give --token, SLUICE_TOKEN, or the token on stdin")
	}
	return tok, nil
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func workspaceCommand() *command {
	var use, force bool
	var requestID string
	return &command{name: "workspace", short: "create, list and remove workspaces (operator token)", subs: []*command{
		{
			name:  "create",
			short: "create a workspace: NAME [--use]; prints its admin token (shown once)",
			flags: func(fs *flag.FlagSet) {
				fs.BoolVar(&use, "use", false, "save the new admin token for --addr (as `sluice auth` does)")
				requestIDFlag(fs, &requestID)
			},
			run: func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usageError("workspace create NAME [--use]")
				}
				client, err := catalogClient(ctx, env)
				if err != nil {
					return err
				}
				resp, err := change(ctx, env, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) (*catalogv1.CreateWorkspaceResponse, error) {
					return client.CreateWorkspace(ctx, &catalogv1.CreateWorkspaceRequest{Name: args[0], RequestId: id})
				})
				if err != nil {
					return err
				}
				if use && resp.GetAdminToken() != "" {
					creds, err := loadCredentials()
					if err != nil {
						return err
					}
					for _, a := range env.Globals.addrs() {
						creds.Servers[normalizeAddr(a)] = savedServer{Token: resp.GetAdminToken(), TLS: env.Globals.TLS || env.Globals.TLSCA != "", TLSCA: absPath(env.Globals.TLSCA)}
					}
					path, err := saveCredentials(creds)
					if err != nil {
						return err
					}
					fmt.Fprintf(env.Stderr, "saved the admin token of %s for %s in %s\n", args[0], env.Globals.Addr, path)
				}
				if env.Globals.Output == "json" {
					return env.printProto(resp)
				}
				if !resp.GetCreated() {
					fmt.Fprintf(env.Stderr, "workspace %s exists (database %s); its admin token is not shown again: `sluice token rotate admin --workspace %s` makes a new one\n",
						args[0], resp.GetWorkspace().GetDatabase(), args[0])
					return nil
				}
				fmt.Fprintf(env.Stderr, "workspace %s created (database %s). Its admin token, shown once:\n", args[0], resp.GetWorkspace().GetDatabase())
				fmt.Fprintln(env.Stdout, resp.GetAdminToken())
				return nil
			},
		},
		{
			name:  "ls",
			short: "list workspaces",
			run: func(ctx context.Context, env *Env, _ []string) error {
				client, err := catalogClient(ctx, env)
				if err != nil {
					return err
				}
				resp := &catalogv1.ListWorkspacesResponse{}
				if resp.Workspaces, err = listAll(ctx, env, func(ctx context.Context, token string) ([]*catalogv1.Workspace, string, error) {
					page, err := client.ListWorkspaces(ctx, &catalogv1.ListWorkspacesRequest{PageSize: 1000, PageToken: token})
					return page.GetWorkspaces(), page.GetNextPageToken(), err
				}); err != nil {
					return err
				}
				return env.printTable(resp, "NAME\tDATABASE\tCREATED", func(tw io.Writer) {
					for _, w := range resp.GetWorkspaces() {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", w.GetName(), w.GetDatabase(), w.GetCreateTime().AsTime().Format("2006-01-02 15:04:05Z"))
					}
				})
			},
		},
		{
			name:  "rm",
			short: "remove a workspace, its tables and its tokens: NAME [--force]",
			flags: func(fs *flag.FlagSet) {
				fs.BoolVar(&force, "force", false, "remove it even while jobs are waiting or working")
				requestIDFlag(fs, &requestID)
			},
			run: func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usageError("workspace rm NAME [--force]")
				}
				client, err := catalogClient(ctx, env)
				if err != nil {
					return err
				}
				if err := env.once(ctx, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) error {
					_, err := client.DeleteWorkspace(ctx, &catalogv1.DeleteWorkspaceRequest{Name: args[0], Force: force, RequestId: id})
					return err
				}); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "workspace %s removed\n", args[0])
				return nil
			},
		},
	}}
}

func tokenCommand() *command {
	var scopes listFlag
	var description, requestID string
	return &command{name: "token", short: "list, create, remove and rotate tokens", subs: []*command{
		{
			name:  "ls",
			short: "list the workspace's tokens (with the operator token and no --workspace: the instance's)",
			run: func(ctx context.Context, env *Env, _ []string) error {
				client, err := tokenClient(ctx, env)
				if err != nil {
					return err
				}
				resp := &catalogv1.ListTokensResponse{}
				if resp.Tokens, err = listAll(ctx, env, func(ctx context.Context, token string) ([]*catalogv1.Token, string, error) {
					page, err := client.ListTokens(ctx, &catalogv1.ListTokensRequest{Workspace: env.Globals.Workspace, PageSize: 1000, PageToken: token})
					return page.GetTokens(), page.GetNextPageToken(), err
				}); err != nil {
					return err
				}
				return env.printTable(resp, "NAME\tKIND\tSCOPES\tFROM DATAFILES", func(tw io.Writer) {
					for _, t := range resp.GetTokens() {
						sc := strings.Join(t.GetScopes(), ",")
						if t.GetKind() == catalogv1.TokenKind_TOKEN_KIND_OPERATOR {
							sc = "(every workspace)"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.GetName(), kindWordOf(t.GetKind()), sc, strings.Join(t.GetDatafileScopes(), ","))
					}
				})
			},
		},
		{
			name:  "create",
			short: "create a token: NAME --scope S [--scope S ...] [--description D]; prints its secret (shown once)",
			flags: func(fs *flag.FlagSet) {
				fs.Var(&scopes, "scope", "scope to grant (repeatable): ADMIN, TOKENS, WORKSPACE:READ_ALL, DATASOURCES:CREATE, DATASOURCES:READ:<ds>, DATASOURCES:APPEND:<ds>, DATASOURCES:DROP:<ds>, PIPES:CREATE, PIPES:READ:<pipe>, PIPES:DROP:<pipe>, PIPES:RUN:<pipe>, JOBS:READ, JOBS:CANCEL, OPSLOG:READ; instance: METRICS:READ")
				fs.StringVar(&description, "description", "", "what the token is for")
				requestIDFlag(fs, &requestID)
			},
			run: func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 || len(scopes) == 0 {
					return usageError("token create NAME --scope S [--scope S ...] [--description D]")
				}
				client, err := tokenClient(ctx, env)
				if err != nil {
					return err
				}
				resp, err := change(ctx, env, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) (*catalogv1.CreateTokenResponse, error) {
					return client.CreateToken(ctx, &catalogv1.CreateTokenRequest{Workspace: env.Globals.Workspace, Name: args[0], Scopes: scopes, Description: description, RequestId: id})
				})
				if err != nil {
					return err
				}
				return env.printIssued(resp, resp.GetIssued(), "created")
			},
		},
		{
			name:  "rm",
			short: "revoke a token: NAME (it stops working everywhere within seconds)",
			flags: func(fs *flag.FlagSet) { requestIDFlag(fs, &requestID) },
			run: func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usageError("token rm NAME")
				}
				client, err := tokenClient(ctx, env)
				if err != nil {
					return err
				}
				if err := env.once(ctx, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) error {
					_, err := client.DeleteToken(ctx, &catalogv1.DeleteTokenRequest{Workspace: env.Globals.Workspace, Name: args[0], RequestId: id})
					return err
				}); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "token %s revoked\n", args[0])
				return nil
			},
		},
		{
			name:  "rotate",
			short: "give a token a new secret: NAME; prints it (shown once); the old one stops working",
			flags: func(fs *flag.FlagSet) { requestIDFlag(fs, &requestID) },
			run: func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return usageError("token rotate NAME")
				}
				client, err := tokenClient(ctx, env)
				if err != nil {
					return err
				}
				resp, err := change(ctx, env, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) (*catalogv1.RotateTokenResponse, error) {
					return client.RotateToken(ctx, &catalogv1.RotateTokenRequest{Workspace: env.Globals.Workspace, Name: args[0], RequestId: id})
				})
				if err != nil {
					return err
				}
				return env.printIssued(resp, resp.GetIssued(), "rotated")
			},
		},
	}}
}

// printIssued prints a token's secret on stdout and what it is on stderr (or the response as
// JSON).
func (e *Env) printIssued(resp proto.Message, issued *catalogv1.IssuedToken, verb string) error {
	if e.Globals.Output == "json" {
		return e.printProto(resp)
	}
	fmt.Fprintf(e.Stderr, "%s %s. Its secret, shown once:\n", describeToken(issued.GetToken()), verb)
	fmt.Fprintln(e.Stdout, issued.GetSecret())
	return nil
}
