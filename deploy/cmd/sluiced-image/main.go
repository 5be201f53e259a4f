// Command sluiced-image writes an OCI image of sluiced as a tarball (make image): the static
// image for split mode, or with -chdb-lib the all-in-one image with embedded ClickHouse.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/deploy/image"
)

func main() {
	var o image.Options
	var created string
	flag.StringVar(&o.Binary, "binary", "", "the sluiced binary (static for split mode; with cgo for -chdb-lib)")
	flag.StringVar(&o.ChDBLib, "chdb-lib", "", "libchdb.so: build the all-in-one image with embedded ClickHouse")
	flag.StringVar(&o.Ref, "ref", "", "image name, for example ghcr.io/sluicehq/sluiced:0.1.0")
	flag.StringVar(&o.Version, "version", "", "release recorded in the image's labels")
	flag.StringVar(&o.Revision, "revision", "", "commit recorded in the image's labels")
	flag.StringVar(&created, "created", "0", "creation time: Unix seconds (a commit time keeps the image reproducible) or RFC 3339")
	flag.StringVar(&o.Out, "out", "", "tarball to write")
	flag.Parse()
	if o.Binary == "" || o.Ref == "" || o.Out == "" {
		fmt.Fprintln(os.Stderr, "sluiced-image: -binary, -ref and -out are required")
		os.Exit(2)
	}
	if secs, err := strconv.ParseInt(created, 10, 64); err == nil {
		o.Created = time.Unix(secs, 0)
	} else if o.Created, err = time.Parse(time.RFC3339, created); err != nil {
		fmt.Fprintf(os.Stderr, "sluiced-image: -created %q: %v\n", created, err)
		os.Exit(2)
	}
	if err := image.Build(o); err != nil {
		fmt.Fprintf(os.Stderr, "sluiced-image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s\n", o.Out, o.Ref)
}
