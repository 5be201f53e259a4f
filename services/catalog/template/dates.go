package template

import (
	"regexp"
	"strings"
)

// Date and time parameters are rendered as typed values, so that they work where ClickHouse
// wants a date (toStartOfHour({{DateTime(job_timestamp)}}) fails with "Illegal type String" on
// current servers) and still compare with columns and strings as the hosted platform's quoted
// literals do (a string compared with a DateTime is read as one):
//
//	{{DateTime(x)}}   -> toDateTime('2024-01-31 10:00:00')
//	{{Date(x)}}       -> toDate('2024-01-31')
//	{{DateTime64(x)}} -> toDateTime64('2024-01-31 10:00:00.123', 3)
//
// Values in another accepted form (31.01.2024 10:00:00, a trailing zone) are read by
// parseDateTimeBestEffort. The value is still validated and quoted as a string literal first.
//
// Only a date function written directly in {{ }} is typed: values that template code computes
// with stay strings. As the argument of a function that parses text (parseDateTimeBestEffort(
// {{DateTime(x)}}), as projects written for the hosted platform do), the value stays the quoted
// string that function needs.

var (
	canonicalDateTime = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}$`)
	canonicalDate     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	canonicalDT64     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.(\d{1,9}))?$`)
	// textArgument matches SQL that ends with the opening parenthesis of a function that
	// parses text: parseDateTime*, to*OrNull/OrZero/BestEffort, and string functions.
	textArgument = regexp.MustCompile(`(?i)\b(parse\w*|to(date|date32|datetime|datetime64)(ornull|orzero|ordefault)|tostring|concat|format|like|ilike|match|length|substring|substr|left|right|lower|upper|replace\w*|extract\w*|splitby\w*|startswith|endswith|position\w*)\s*\(\s*$`)
)

// dateCall returns the type when e is a call of Date, DateTime or DateTime64 by name.
func dateCall(e node) string {
	c, ok := e.(*callNode)
	if !ok {
		return ""
	}
	n, ok := c.fn.(*nameNode)
	if !ok {
		return ""
	}
	switch n.name {
	case "Date", "DateTime", "DateTime64":
		return n.name
	}
	return ""
}

// typedDate renders a validated date value of type typ; before is the SQL rendered so far.
func typedDate(typ, value, before string) string {
	quoted := quoteString(value)
	if textArgument.MatchString(before) {
		return quoted
	}
	switch typ {
	case "Date":
		if canonicalDate.MatchString(value) {
			return "toDate(" + quoted + ")"
		}
		return "toDate(parseDateTimeBestEffort(" + quoted + "))"
	case "DateTime":
		if canonicalDateTime.MatchString(value) {
			return "toDateTime(" + quoteString(strings.Replace(value, "T", " ", 1)) + ")"
		}
		return "parseDateTimeBestEffort(" + quoted + ")"
	default:
		scale := 3
		if m := canonicalDT64.FindStringSubmatch(value); m != nil {
			if len(m[2]) > scale {
				scale = len(m[2])
			}
			return "toDateTime64(" + quoteString(strings.Replace(value, "T", " ", 1)) + ", " + string(rune('0'+scale)) + ")"
		}
		return "parseDateTime64BestEffort(" + quoted + ", " + string(rune('0'+scale)) + ")"
	}
}
