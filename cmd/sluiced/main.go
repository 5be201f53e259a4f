// Command sluiced runs Sluice's services: all of them in one process (-target=all, the
// default) or any comma list of catalog, scheduler, executor and opslog.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice/cmd/sluiced/app"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := app.ParseConfig(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, app.ErrPrintVersion) {
		fmt.Println(app.VersionString())
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluiced: configuration: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluiced: %v\n", err)
		return 1
	}
	if err := a.Start(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "sluiced: %v\n", err)
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
	case err := <-a.Failed():
		// A service that waited for its dependencies could not start once they answered.
		fmt.Fprintf(os.Stderr, "sluiced: %v\n", err)
		code = 1
	}
	stop()
	a.Logger().Info("shutting down")
	if err := a.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "sluiced: shutdown: %v\n", err)
		return 1
	}
	a.Logger().Info("stopped")
	return code
}
