// Quickstart pushes a folder of datafiles, runs a Copy Pipe while showing its progress, and
// prints the workspace's latest ops-log events. SLUICE_ADDR and SLUICE_TOKEN say where and as
// whom (a workspace token, such as the admin token `sluice workspace create` prints):
//
//	go run ./examples/quickstart ../testdata/project seed
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	sluice "github.com/sluicehq/sluice/sdk/go"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: quickstart FOLDER COPY_PIPE")
	}
	ctx := context.Background()
	c, err := sluice.Dial(os.Getenv("SLUICE_ADDR"), sluice.WithToken(os.Getenv("SLUICE_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	if _, err := c.PushDir(ctx, os.Args[1], sluice.PushOptions{}); err != nil {
		var e *sluice.Error
		if errors.As(err, &e) {
			for _, d := range e.Diagnostics {
				fmt.Printf("%s:%d:%d: %s\n", d.GetPosition().GetFile(), d.GetPosition().GetLine(), d.GetPosition().GetColumn(), d.GetMessage())
			}
		}
		log.Fatal(err)
	}
	// RunCopy sends a request id, and its retries reuse it: the copy runs once.
	job, err := c.RunCopy(ctx, &schedulerv1.RunCopyRequest{Pipe: os.Args[2]})
	if err != nil {
		log.Fatal(err)
	}
	job, err = c.Wait(ctx, job, func(j *schedulerv1.Job) {
		fmt.Printf("job %s: %s, %d/%d steps\n", j.GetId(), j.GetStatus(), j.GetProgress().GetStepsDone(), j.GetProgress().GetStepsTotal())
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("copied %d rows\n", job.GetProgress().GetStatistics().GetWrittenRows())

	n := 0
	for ev, err := range c.Events(ctx, &opslogv1.QueryEventsRequest{PageSize: 5}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.GetTimestamp().AsTime().Format("15:04:05.000"), ev.GetEventType(), ev.GetDatasourceName(), ev.GetResult())
		if n++; n == 5 {
			break
		}
	}
}
