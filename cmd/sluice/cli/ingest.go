package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
)

// chunkSize is the size of the file chunks `datasource append` streams.
const chunkSize = 1 << 20

// datasourceAppendCommand is `sluice datasource append|replace NAME FILE`.
func datasourceAppendCommand(replace bool) *command {
	var format, header, requestID string
	var wait bool
	name, verb := "append", "appends the rows of a file to a Data Source"
	if replace {
		name, verb = "replace", "replaces a Data Source's content with the rows of a file, atomically"
	}
	return &command{
		name:  name,
		short: verb + ": NAME FILE [--format ndjson|csv|parquet] [--header auto|yes|no]",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&format, "format", "", "ndjson, csv or parquet (default: from the file's extension; .gz is read compressed)")
			fs.StringVar(&header, "header", "auto", "CSV: auto (a first line of column names is a header), yes or no")
			if !replace {
				fs.BoolVar(&wait, "wait", true, "return once the rows are visible in the Data Source (--wait=false: once they are stored)")
			}
			requestIDFlag(fs, &requestID)
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 2 {
				return usageError("datasource %s NAME FILE [--format ndjson|csv|parquet] [--header auto|yes|no]", name)
			}
			f, err := fileFormat(args[1], format)
			if err != nil {
				return err
			}
			h, err := csvHeader(header)
			if err != nil {
				return err
			}
			file, err := os.Open(args[1])
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			defer func() { _ = file.Close() }()
			st, err := file.Stat()
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			client, err := connect(ctx, env, ingestv1.IngestService_ServiceDesc.ServiceName, ingestv1.NewIngestServiceClient)
			if err != nil {
				return err
			}
			mode := ingestv1.Mode_MODE_APPEND
			if replace {
				mode = ingestv1.Mode_MODE_REPLACE
			}
			var resp *ingestv1.AppendStreamResponse
			// Each attempt sends the whole file again with the same request id: the rows are
			// written once. (A file that cannot be read is not a reason to retry.)
			err = env.once(ctx, &requestID, 0, func(ctx context.Context, id string) error {
				if _, err := file.Seek(0, io.SeekStart); err != nil {
					return fmt.Errorf("%s: %w", args[1], err)
				}
				start := &ingestv1.AppendStart{Workspace: env.Globals.Workspace, Datasource: args[0], Format: f, Mode: mode, CsvHeader: h, Wait: wait,
					FileName: filepath.Base(args[1]), RequestId: id}
				resp, err = sendFile(ctx, env, client, start, file, st.Size())
				return err
			})
			if err != nil {
				return err
			}
			if env.Globals.Output == "json" {
				return env.printProto(resp)
			}
			r := resp.GetResult()
			fmt.Fprintf(env.Stdout, "%s %s: %d rows", map[bool]string{false: "appended to", true: "replaced"}[replace], args[0], r.GetSuccessfulRows())
			if q := r.GetQuarantinedRows(); q > 0 {
				fmt.Fprintf(env.Stdout, ", %d rows in quarantine (%s_quarantine)", q, args[0])
			}
			fmt.Fprintf(env.Stdout, " (import %s)\n", r.GetImportId())
			return nil
		},
	}
}

// sendFile streams start and then file's bytes in chunks, and returns the answer.
func sendFile(ctx context.Context, env *Env, client ingestv1.IngestServiceClient, start *ingestv1.AppendStart, file io.Reader, size int64) (*ingestv1.AppendStreamResponse, error) {
	stream, err := client.AppendStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Start{Start: start}}); err != nil {
		return nil, closeAndRecvError(stream, err)
	}
	buf := make([]byte, chunkSize)
	var sent int64
	for {
		n, rerr := file.Read(buf)
		if n > 0 {
			if err := stream.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				// The server answered before reading everything (a refusal, or the answer of
				// an earlier attempt with this request id): its answer says which.
				return stream.CloseAndRecv()
			}
			sent += int64(n)
			uploadProgress(env, sent, size, false)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read %s: %w", start.GetFileName(), rerr)
		}
	}
	uploadProgress(env, sent, size, true)
	return stream.CloseAndRecv()
}

// closeAndRecvError gets the server's error after a failed Send: the stream's status says why.
func closeAndRecvError(stream ingestv1.IngestService_AppendStreamClient, sendErr error) error {
	if _, err := stream.CloseAndRecv(); err != nil {
		return err
	}
	return sendErr
}

// uploadProgress shows how much of the file was sent: a bar on a terminal, nothing otherwise.
func uploadProgress(env *Env, sent, total int64, done bool) {
	if !env.IsTerminal || env.Globals.Output == "json" || total <= 0 {
		return
	}
	const width = 30
	n := int(int64(width) * sent / total)
	fmt.Fprintf(env.Stderr, "\r\033[K[%s%s] %d/%d bytes sent", strings.Repeat("#", n), strings.Repeat(" ", width-n), sent, total)
	if done {
		fmt.Fprintln(env.Stderr)
	}
}

func fileFormat(path, flagValue string) (ingestv1.Format, error) {
	v := strings.ToLower(flagValue)
	if v == "" {
		base := strings.TrimSuffix(strings.ToLower(path), ".gz")
		switch {
		case strings.HasSuffix(base, ".csv"):
			v = "csv"
		case strings.HasSuffix(base, ".parquet"):
			v = "parquet"
		default:
			v = "ndjson"
		}
	}
	switch v {
	case "ndjson", "json", "jsonl":
		return ingestv1.Format_FORMAT_NDJSON, nil
	case "csv":
		return ingestv1.Format_FORMAT_CSV, nil
	case "parquet":
		return ingestv1.Format_FORMAT_PARQUET, nil
	}
	return 0, usageError("--format: %q is not ndjson, csv or parquet", flagValue)
}

func csvHeader(v string) (ingestv1.CSVHeader, error) {
	switch strings.ToLower(v) {
	case "", "auto":
		return ingestv1.CSVHeader_CSV_HEADER_AUTO, nil
	case "yes", "true":
		return ingestv1.CSVHeader_CSV_HEADER_PRESENT, nil
	case "no", "false":
		return ingestv1.CSVHeader_CSV_HEADER_ABSENT, nil
	}
	return 0, usageError("--header: %q is not auto, yes or no", v)
}
