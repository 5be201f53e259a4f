package catalog

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // DateTime('Asia/Tokyo') values carry their zone wherever Sluice runs

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// queryValue encodes a result value of ClickHouse type typ by the one rule per type that
// QueryResponse.rows documents, so clients never guess: 64-bit integers and decimals as exact
// strings, Date as a date, DateTime in its zone (serverZone when the type names none),
// containers as JSON lists and objects. v is as the warehouse returns it (see
// warehouse.Result).
func queryValue(v any, typ string, serverZone *time.Location) *structpb.Value {
	if v == nil {
		return structpb.NewNullValue()
	}
	base, args := warehouse.SplitType(typ)
	switch base {
	case "Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32":
		switch x := v.(type) {
		case int64:
			return structpb.NewNumberValue(float64(x))
		case uint64:
			return structpb.NewNumberValue(float64(x))
		}
	case "Int64", "UInt64", "Int128", "Int256", "UInt128", "UInt256":
		return structpb.NewStringValue(fmt.Sprint(v))
	case "Float32", "Float64", "BFloat16":
		if f, ok := v.(float64); ok {
			switch {
			case math.IsNaN(f):
				return structpb.NewStringValue("nan")
			case math.IsInf(f, 1):
				return structpb.NewStringValue("inf")
			case math.IsInf(f, -1):
				return structpb.NewStringValue("-inf")
			}
			return structpb.NewNumberValue(f)
		}
	case "Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256":
		return structpb.NewStringValue(decimalText(fmt.Sprint(v), decimalScale(base, args)))
	case "Bool":
		if b, ok := v.(bool); ok {
			return structpb.NewBoolValue(b)
		}
	case "Date", "Date32":
		if t, ok := v.(time.Time); ok {
			return structpb.NewStringValue(t.UTC().Format(time.DateOnly))
		}
	case "DateTime", "DateTime64":
		if t, ok := v.(time.Time); ok {
			return structpb.NewStringValue(dateTimeText(t, base, args, serverZone))
		}
	case "Array":
		if l, ok := v.([]any); ok && len(args) == 1 {
			out := &structpb.ListValue{}
			for _, e := range l {
				out.Values = append(out.Values, queryValue(e, args[0], serverZone))
			}
			return structpb.NewListValue(out)
		}
	case "Tuple":
		if l, ok := v.([]any); ok {
			out := &structpb.ListValue{}
			for i, e := range l {
				et := ""
				if i < len(args) {
					et = warehouse.TupleElementType(args[i])
				}
				out.Values = append(out.Values, queryValue(e, et, serverZone))
			}
			return structpb.NewListValue(out)
		}
	case "Map":
		if m, ok := v.(map[string]any); ok && len(args) == 2 {
			out := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(m))}
			for k, e := range m {
				out.Fields[k] = queryValue(e, args[1], serverZone)
			}
			return structpb.NewStructValue(out)
		}
	}
	// Strings, UUIDs, IPs, enums (by name) and any other type: the text ClickHouse prints.
	switch x := v.(type) {
	case string:
		return structpb.NewStringValue(x)
	case time.Time:
		return structpb.NewStringValue(x.UTC().Format(time.RFC3339Nano))
	case []any:
		out := &structpb.ListValue{}
		for _, e := range x {
			out.Values = append(out.Values, queryValue(e, "", serverZone))
		}
		return structpb.NewListValue(out)
	}
	return structpb.NewStringValue(fmt.Sprint(v))
}

// decimalScale is S of Decimal(P, S) or DecimalN(S).
func decimalScale(base string, args []string) int {
	arg := ""
	switch {
	case base == "Decimal" && len(args) == 2:
		arg = args[1]
	case base != "Decimal" && len(args) == 1:
		arg = args[0]
	}
	s, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || s < 0 {
		return -1
	}
	return s
}

// decimalText writes an exact decimal with exactly scale digits after the point (as given when
// the scale is unknown).
func decimalText(s string, scale int) string {
	if scale < 0 {
		return s
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return s
	}
	return r.FloatString(scale)
}

// dateTimeText writes a DateTime or DateTime64(p) value as RFC 3339 in the type's zone (the
// server's when the type names none), with p fraction digits.
func dateTimeText(t time.Time, base string, args []string, serverZone *time.Location) string {
	precision := 0
	zone := ""
	switch {
	case base == "DateTime" && len(args) >= 1:
		zone = args[0]
	case base == "DateTime64" && len(args) >= 1:
		precision, _ = strconv.Atoi(strings.TrimSpace(args[0]))
		if len(args) >= 2 {
			zone = args[1]
		}
	}
	loc := serverZone
	if zone = strings.Trim(strings.TrimSpace(zone), "'"); zone != "" {
		if l, err := time.LoadLocation(zone); err == nil {
			loc = l
		}
	}
	if loc == nil {
		loc = time.UTC
	}
	layout := "2006-01-02T15:04:05"
	if precision > 0 {
		layout += "." + strings.Repeat("0", min(precision, 9))
	}
	return t.In(loc).Format(layout + "Z07:00")
}
