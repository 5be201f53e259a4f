// Package paging makes and reads the page tokens of Sluice's list calls (AIP-158). A token is
// opaque to clients: it holds the sort key of the last item returned and a fingerprint of the
// request it continues, so a token used with another filter is refused instead of silently
// paging something else, and an item is never skipped or repeated however the pages are timed.
package paging

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/apierr"
)

// Default is the page size of a request that names none.
const Default = 100

// token is what a page token encodes.
type token struct {
	V int      `json:"v"`
	F string   `json:"f"`
	K []string `json:"k"`
}

// Size is the page size a request asks for: Default for 0, an error when negative or above max.
func Size(pageSize int32, max int) (int, error) {
	switch {
	case pageSize < 0:
		return 0, apierr.InvalidArgument("page_size", "must not be negative")
	case pageSize == 0:
		return min(Default, max), nil
	case int(pageSize) > max:
		return 0, apierr.InvalidArgument("page_size", "%d is more than the most a page holds, %d", pageSize, max)
	}
	return int(pageSize), nil
}

// Next is the token of the page after the one ending with key, for req.
func Next(req proto.Message, key ...string) string {
	b, _ := json.Marshal(token{V: 1, F: fingerprint(req), K: key})
	return base64.RawURLEncoding.EncodeToString(b)
}

// Start reads req's page token: nil for the first page, else the key of the last item of the
// previous page. A token that is malformed or was made for a request with other parameters is
// INVALID_PAGE_TOKEN.
func Start(req proto.Message, pageToken string) ([]string, error) {
	if pageToken == "" {
		return nil, nil
	}
	bad := func(why string) error {
		e := apierr.InvalidArgument("page_token", "%s: pass the next_page_token of the previous page, with the rest of the request unchanged", why)
		e.Reason = commonv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN
		return e
	}
	b, err := base64.RawURLEncoding.DecodeString(pageToken)
	if err != nil {
		return nil, bad("not a page token")
	}
	var t token
	if err := json.Unmarshal(b, &t); err != nil || t.V != 1 || len(t.K) == 0 {
		return nil, bad("not a page token")
	}
	if t.F != fingerprint(req) {
		return nil, bad("the token was made for a request with other parameters")
	}
	return t.K, nil
}

// fingerprint identifies a list request without its paging fields.
func fingerprint(req proto.Message) string {
	c := proto.Clone(req)
	m := c.ProtoReflect()
	fields := m.Descriptor().Fields()
	for _, name := range []protoreflect.Name{"page_token", "page_size"} {
		if fd := fields.ByName(name); fd != nil {
			m.Clear(fd)
		}
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(append([]byte(m.Descriptor().FullName()+"\x00"), b...))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// Page returns the page of items (in the list's order) that req asks for, and the token of the
// next page ("" on the last). key is an item's sort key; after reports whether an item comes
// after a key in the list's order. max bounds page_size.
func Page[T any](req proto.Message, pageSize int32, pageToken string, max int, items []T, key func(T) []string, after func(T, []string) bool) ([]T, string, error) {
	size, err := Size(pageSize, max)
	if err != nil {
		return nil, "", err
	}
	start, err := Start(req, pageToken)
	if err != nil {
		return nil, "", err
	}
	i := 0
	if start != nil {
		for i < len(items) && !after(items[i], start) {
			i++
		}
	}
	items = items[i:]
	if len(items) <= size {
		return items, "", nil
	}
	return items[:size], Next(req, key(items[size-1])...), nil
}

// ByName pages a list in ascending name order.
func ByName[T any](req proto.Message, pageSize int32, pageToken string, max int, items []T, name func(T) string) ([]T, string, error) {
	return Page(req, pageSize, pageToken, max, items, func(t T) []string { return []string{name(t)} },
		func(t T, k []string) bool { return name(t) > k[0] })
}
