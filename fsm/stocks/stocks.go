// Package stocks is the stock-quote domain of the state machine: the latest
// quote per symbol, by quote time, with exact decimal prices.
//
// Rules: an older quote arriving later is accepted but does not replace a
// newer one (the reply shows the current quote); at equal quote times the
// later write in log order wins; a quote sent without a time takes the
// leader's clock, but never a time earlier than the one already stored for
// its symbol, so log order wins when two leaders' clocks disagree.
package stocks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/storage"
)

// OpPut records a quote.
const OpPut uint8 = 1

// MaxFutureSkew is how far ahead of the leader's clock a quote time may be.
const MaxFutureSkew = 24 * time.Hour

// Limits on a price.
const (
	MaxDecimals      = 8
	maxIntegerDigits = 15
)

var prefixQuote = []byte("stocks/q/")

// Quote is the latest price of a symbol. Index is the Raft index of the
// write that set it.
type Quote struct {
	Symbol string    `json:"symbol"`
	Price  string    `json:"price"`
	Time   time.Time `json:"time"`
	Index  uint64    `json:"index"`
}

// PutCommand is the payload of OpPut. Time is zero when the writer gave
// none and the leader's stamp applies.
type PutCommand struct {
	Symbol string    `json:"symbol"`
	Price  string    `json:"price"`
	Time   time.Time `json:"time,omitzero"`
}

// ValidSymbol reports whether s is 1 to 10 of A-Z, 0-9, '.' and '-',
// starting with a letter or digit (BRK.B, BF-B; not "." or "-").
func ValidSymbol(s string) bool {
	if len(s) == 0 || len(s) > 10 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ParsePrice accepts a price as a JSON string or JSON number and returns it
// in canonical form: no leading zeros, no trailing fractional zeros, no
// trailing point ("574.0" → "574", "0.50" → "0.5"). Zero, negatives,
// exponents, NaN, infinities and more than MaxDecimals decimals are
// rejected with a *fsm.Error.
func ParsePrice(raw json.RawMessage) (string, error) {
	raw = bytes.Trim(raw, " \t\r\n") // JSON's whitespace, nothing more
	text := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", fsm.Errorf(fsm.CodeInvalid, "price is not a valid JSON string")
		}
	}
	return CanonicalPrice(text)
}

// CanonicalPrice validates a decimal price written as digits with an
// optional fractional part and returns its canonical form.
func CanonicalPrice(text string) (string, error) {
	bad := func(why string) error {
		return fsm.Errorf(fsm.CodeInvalid, "price %q: %s", text, why)
	}
	if text == "" {
		return "", bad("empty")
	}
	intPart, fracPart, hasPoint := strings.Cut(text, ".")
	if !digitsOnly(intPart) || !digitsOnly(fracPart) || (hasPoint && fracPart == "") ||
		intPart == "" {
		return "", bad("want a positive decimal such as 116.03 (no sign, exponent or NaN)")
	}
	fracPart = strings.TrimRight(fracPart, "0")
	intPart = strings.TrimLeft(intPart, "0")
	if len(fracPart) > MaxDecimals {
		return "", bad(fmt.Sprintf("more than %d decimals", MaxDecimals))
	}
	if len(intPart) > maxIntegerDigits {
		return "", bad(fmt.Sprintf("more than %d integer digits", maxIntegerDigits))
	}
	if intPart == "" && fracPart == "" {
		return "", bad("must be greater than zero")
	}
	if intPart == "" {
		intPart = "0"
	}
	if fracPart == "" {
		return intPart, nil
	}
	return intPart + "." + fracPart, nil
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Validate checks a command before it is proposed; Apply checks again.
func (c PutCommand) Validate() error {
	if !ValidSymbol(c.Symbol) {
		return fsm.Errorf(fsm.CodeInvalid,
			"symbol %q: want 1 to 10 characters of A-Z, 0-9, '.' and '-', "+
				"starting with a letter or digit", c.Symbol)
	}
	canonical, err := CanonicalPrice(c.Price)
	if err != nil {
		return err
	}
	if canonical != c.Price {
		return fsm.Errorf(fsm.CodeInvalid, "price %q is not in canonical form", c.Price)
	}
	if !c.Time.IsZero() && (c.Time.Year() < 1900 || c.Time.Year() > 9999) {
		return fsm.Errorf(fsm.CodeInvalid, "time %s is out of range (1900 to 9999)",
			c.Time.Format(time.RFC3339))
	}
	return nil
}

// Command wraps c in the state machine's envelope.
func (c PutCommand) Command() fsm.Command {
	raw, _ := json.Marshal(c)
	return fsm.Command{Domain: fsm.DomainStocks, Op: OpPut, Payload: raw}
}

// Domain applies stock commands.
type Domain struct{}

// Apply implements fsm.Domain.
func (Domain) Apply(tx storage.ReadWriter, req fsm.Request) (fsm.Output, error) {
	if req.Op != OpPut {
		return fsm.Output{}, fsm.Errorf(fsm.CodeInvalid, "unknown stocks op %d", req.Op)
	}
	var cmd PutCommand
	if err := json.Unmarshal(req.Payload, &cmd); err != nil {
		return fsm.Output{}, fsm.Errorf(fsm.CodeInvalid, "bad stocks payload: %v", err)
	}
	if err := cmd.Validate(); err != nil {
		return fsm.Output{}, err
	}

	current, err := Get(tx, cmd.Symbol)
	exists := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fsm.Output{}, err
	}

	quoteTime := cmd.Time.UTC()
	if quoteTime.After(req.Time.Add(MaxFutureSkew)) {
		// A quote from the far future would pin its symbol forever.
		return fsm.Output{}, fsm.Errorf(fsm.CodeInvalid,
			"time %s is more than %v ahead of the leader's clock (%s)",
			quoteTime.Format(time.RFC3339), MaxFutureSkew, req.Time.Format(time.RFC3339))
	}
	if cmd.Time.IsZero() {
		quoteTime = req.Time
		if exists && quoteTime.Before(current.Time) {
			quoteTime = current.Time
		}
	}
	if exists && quoteTime.Before(current.Time) {
		raw, _ := json.Marshal(current)
		return fsm.Output{Value: raw}, nil
	}

	quote := Quote{Symbol: cmd.Symbol, Price: cmd.Price, Time: quoteTime, Index: req.Index}
	raw, err := json.Marshal(quote)
	if err != nil {
		return fsm.Output{}, err
	}
	if err := tx.Set(quoteKey(cmd.Symbol), raw); err != nil {
		return fsm.Output{}, err
	}
	return fsm.Output{
		Value:  raw,
		Events: []fsm.Event{{Domain: fsm.DomainStocks, Key: cmd.Symbol, Data: raw}},
	}, nil
}

// Get returns the latest quote of symbol, or storage.ErrNotFound.
func Get(r storage.Reader, symbol string) (Quote, error) {
	raw, err := r.Get(quoteKey(symbol))
	if err != nil {
		return Quote{}, err
	}
	var q Quote
	if err := json.Unmarshal(raw, &q); err != nil {
		return Quote{}, fmt.Errorf("stocks: decode %s: %w", symbol, err)
	}
	return q, nil
}

// List returns the latest quote of every symbol, ordered by symbol.
func List(r storage.Reader) ([]Quote, error) {
	quotes := []Quote{}
	err := r.Scan(prefixQuote, storage.PrefixEnd(prefixQuote), false, func(_, v []byte) error {
		var q Quote
		if err := json.Unmarshal(v, &q); err != nil {
			return err
		}
		quotes = append(quotes, q)
		return nil
	})
	return quotes, err
}

func quoteKey(symbol string) []byte {
	return append(append([]byte(nil), prefixQuote...), symbol...)
}
