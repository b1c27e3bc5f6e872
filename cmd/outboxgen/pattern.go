package main

import (
	"fmt"
	"strings"
)

// checkPattern reports the first construct of a regular expression that is
// not in the subset RE2 (Go's regexp, used by Validate) and ECMA-262 (used
// by JSON Schema validators of other languages) both read the same way, or
// nil. The subset: literals; escaped punctuation; \d \D \w \W \b \B; \t \n
// \r \f \v; \xHH; character classes of literals, ranges and those escapes;
// . ^ $ |; groups ( ) and (?: ); quantifiers * + ? {n} {n,} {n,m}, each
// optionally lazy (?).
func checkPattern(re string) error {
	rs := []rune(re)
	i := 0
	atomDone := false // a quantifier may follow
	depth := 0
	for i < len(rs) {
		c := rs[i]
		switch c {
		case '\\':
			n, err := patternEscape(rs, i, false)
			if err != nil {
				return err
			}
			i += n
			atomDone = !(n == 2 && (rs[i-1] == 'b' || rs[i-1] == 'B'))
			continue
		case '[':
			n, err := patternClass(rs, i)
			if err != nil {
				return err
			}
			i += n
			atomDone = true
			continue
		case '(':
			if i+1 < len(rs) && rs[i+1] == '?' {
				if i+2 < len(rs) && rs[i+2] == ':' {
					i += 3
					depth++
					atomDone = false
					continue
				}
				return fmt.Errorf("%q at offset %d: only (?:...) groups are portable; flags such as (?i), named groups (?P<name>...) and (?<name>...), and lookaround are not", string(rs[i:min(len(rs), i+4)]), i)
			}
			depth++
			i++
			atomDone = false
			continue
		case ')':
			depth--
			i++
			atomDone = true
			continue
		case '*', '+', '?', '{':
			n := 1
			if c == '{' {
				if n = patternRepeat(rs, i); n == 0 {
					return fmt.Errorf("'{' at offset %d: a literal { must be escaped as \\{", i)
				}
			}
			if !atomDone {
				return fmt.Errorf("%q at offset %d: nothing to repeat", string(rs[i:i+n]), i)
			}
			i += n
			if i < len(rs) && rs[i] == '?' {
				i++ // lazy
			}
			if i < len(rs) && (rs[i] == '+' || rs[i] == '*' || rs[i] == '?' || rs[i] == '{') {
				return fmt.Errorf("%q at offset %d: a repeated quantifier (or possessive +) is not portable", string(rs[i]), i)
			}
			atomDone = false
			continue
		case '}', ']':
			return fmt.Errorf("%q at offset %d: a literal %c must be escaped", string(c), i, c)
		case '^', '$', '|':
			i++
			atomDone = false
			continue
		}
		i++
		atomDone = true
	}
	if depth != 0 {
		return fmt.Errorf("unbalanced parentheses")
	}
	return nil
}

// patternRepeat returns the length of a {n}, {n,} or {n,m} quantifier at
// rs[i], or 0.
func patternRepeat(rs []rune, i int) int {
	j := i + 1
	digits := func() int {
		k := j
		for j < len(rs) && rs[j] >= '0' && rs[j] <= '9' {
			j++
		}
		return j - k
	}
	if digits() == 0 {
		return 0
	}
	if j < len(rs) && rs[j] == ',' {
		j++
		digits()
	}
	if j < len(rs) && rs[j] == '}' {
		return j + 1 - i
	}
	return 0
}

// patternEscape checks the escape at rs[i] (a backslash) and returns its
// length.
func patternEscape(rs []rune, i int, inClass bool) (int, error) {
	if i+1 >= len(rs) {
		return 0, fmt.Errorf("trailing backslash")
	}
	c := rs[i+1]
	switch {
	case strings.ContainsRune(`dDwW`, c), strings.ContainsRune("tnrfv", c):
		return 2, nil
	case c == 'b' || c == 'B':
		if inClass {
			return 0, fmt.Errorf(`\%c at offset %d: inside a class it is a backspace in ECMA-262 and an error in RE2`, c, i)
		}
		return 2, nil
	case c == 'x':
		if i+3 < len(rs) && isHex(rs[i+2]) && isHex(rs[i+3]) {
			return 4, nil
		}
		return 0, fmt.Errorf(`\x at offset %d: write exactly two hex digits, \xHH (\x{...} is RE2 only)`, i)
	case c == 's' || c == 'S':
		return 0, fmt.Errorf(`\%c at offset %d: RE2 and ECMA-262 disagree on which characters are spaces; write the class, e.g. [ \t\n\r\f]`, c, i)
	case c == 'p' || c == 'P':
		return 0, fmt.Errorf(`\%c at offset %d: Unicode classes are RE2 only (ECMA-262 needs the u flag, which JSON Schema does not set)`, c, i)
	case c == 'A' || c == 'z':
		return 0, fmt.Errorf(`\%c at offset %d: RE2-only text anchor; use ^ and $`, c, i)
	case c == 'Q' || c == 'E':
		return 0, fmt.Errorf(`\%c at offset %d: \Q...\E quoting is RE2 only; escape each character`, c, i)
	case c == 'u' || c == 'c' || c == 'k':
		return 0, fmt.Errorf(`\%c at offset %d: ECMA-262-only escape`, c, i)
	case c >= '0' && c <= '9':
		return 0, fmt.Errorf(`\%c at offset %d: backreferences and octal escapes are not portable`, c, i)
	case strings.ContainsRune(`^$\.*+?()[]{}|/`, c) || inClass && c == '-':
		return 2, nil // escaped syntax character: literal in both (also with ECMA-262's u flag)
	case c < 0x80 && !isAlnum(c):
		return 0, fmt.Errorf(`\%c at offset %d: only syntax characters ^$\.*+?()[]{}|/ (and - in a class) may be escaped; write %c unescaped`, c, i, c)
	}
	return 0, fmt.Errorf(`\%c at offset %d: escape not in the subset common to RE2 and ECMA-262`, c, i)
}

// patternClass checks the character class at rs[i] ('[') and returns its
// length.
func patternClass(rs []rune, i int) (int, error) {
	j := i + 1
	if j < len(rs) && rs[j] == '^' {
		j++
	}
	if j < len(rs) && rs[j] == ']' {
		return 0, fmt.Errorf("'[' at offset %d: a class starting with ] is read differently ([] is empty in ECMA-262); escape it as \\]", i)
	}
	for j < len(rs) {
		switch c := rs[j]; c {
		case ']':
			return j + 1 - i, nil
		case '[':
			if j+1 < len(rs) && (rs[j+1] == ':' || rs[j+1] == '=' || rs[j+1] == '.') {
				return 0, fmt.Errorf("%q at offset %d: POSIX classes like [[:alpha:]] are RE2 only; write the ranges, e.g. [A-Za-z]", string(rs[j:min(len(rs), j+9)]), j)
			}
			return 0, fmt.Errorf("'[' at offset %d: a literal [ inside a class must be escaped as \\[", j)
		case '\\':
			n, err := patternEscape(rs, j, true)
			if err != nil {
				return 0, err
			}
			if n == 2 && strings.ContainsRune("dDwW", rs[j+1]) && j+n < len(rs) && rs[j+n] == '-' && j+n+1 < len(rs) && rs[j+n+1] != ']' {
				return 0, fmt.Errorf("%q at offset %d: a range bound cannot be a class escape", string(rs[j:j+n+1]), j)
			}
			j += n
		default:
			j++
		}
	}
	return 0, fmt.Errorf("'[' at offset %d: unterminated character class", i)
}

func isHex(r rune) bool { return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' }

func isAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}
