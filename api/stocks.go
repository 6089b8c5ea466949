package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/shoal-db/shoal/fsm"
	"github.com/shoal-db/shoal/fsm/stocks"
	"github.com/shoal-db/shoal/hottier"
)

// putStockBody is the body of PUT /v1/stocks/{symbol}.
type putStockBody struct {
	Price json.RawMessage `json:"price"`
	Time  *string         `json:"time"`
}

func (s *Server) putStock(w http.ResponseWriter, r *http.Request) {
	symbol := r.PathValue("symbol")
	if err := checkSymbol(symbol); err != nil {
		writeError(w, err)
		return
	}
	var body putStockBody
	if err := s.decodeBody(w, r, &body); err != nil {
		writeError(w, err)
		return
	}
	if len(body.Price) == 0 || string(body.Price) == "null" {
		writeError(w, badRequest(`"price" is required, e.g. {"price": "116.03"}`))
		return
	}
	price, err := stocks.ParsePrice(body.Price)
	if err != nil {
		writeError(w, err)
		return
	}
	cmd := stocks.PutCommand{Symbol: symbol, Price: price}
	if body.Time != nil {
		t, err := time.Parse(time.RFC3339Nano, *body.Time)
		if err != nil {
			writeError(w, badRequest("time %q: want RFC 3339, e.g. 2020-11-25T00:00:00Z",
				*body.Time))
			return
		}
		if t.Year() < 1900 {
			writeError(w, badRequest("time %q is out of range (1900 to 9999)", *body.Time))
			return
		}
		if t.After(time.Now().Add(stocks.MaxFutureSkew)) {
			writeError(w, badRequest("time %q is more than %v in the future", *body.Time,
				stocks.MaxFutureSkew))
			return
		}
		cmd.Time = t.UTC()
	}
	if err := cmd.Validate(); err != nil {
		writeError(w, err)
		return
	}

	result, err := s.propose(r, cmd.Command())
	if err != nil {
		writeError(w, err)
		return
	}
	var quote stocks.Quote
	if err := json.Unmarshal(result.Value, &quote); err != nil {
		writeError(w, err)
		return
	}
	// The reply carries this write's index, so a later read anywhere with
	// min_index sees it, even when an older quote left the current one.
	quote.Index = result.Index
	setIndex(w, result.Index)
	writeJSON(w, http.StatusOK, quote)
}

func (s *Server) getStock(w http.ResponseWriter, r *http.Request) {
	symbol := r.PathValue("symbol")
	if err := checkSymbol(symbol); err != nil {
		writeError(w, err)
		return
	}
	index, err := s.readBarrier(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if s.cfg.HotTier != nil {
		s.getStockHot(w, r, symbol, index)
		return
	}
	quote, err := stocks.Get(s.node.State(), symbol)
	if err != nil {
		writeError(w, notFound(err, "no quote for symbol %s", symbol))
		return
	}
	setIndex(w, index)
	writeJSON(w, http.StatusOK, quote)
}

// getStockHot answers a quote through the hot tier. The barrier has run,
// so the tier's rule (never older than what this node applied for the
// symbol) keeps consistency=strong and min_index meaning what they say.
func (s *Server) getStockHot(w http.ResponseWriter, r *http.Request, symbol string,
	index uint64) {
	value, tier, err := s.cfg.HotTier.Get(r.Context(), StockHotKey(symbol),
		func() (hottier.Value, error) {
			quote, err := stocks.Get(s.node.State(), symbol)
			if err != nil {
				return hottier.Value{}, err
			}
			raw, err := json.Marshal(quote)
			return hottier.Value{Data: raw, Index: quote.Index}, err
		})
	if err != nil {
		writeError(w, notFound(err, "no quote for symbol %s", symbol))
		return
	}
	setIndex(w, index)
	w.Header().Set(HeaderTier, tier)
	writeJSON(w, http.StatusOK, json.RawMessage(value.Data))
}

// HeaderTier names the tier that answered a read through the hot tier:
// near, redis or pebble.
const HeaderTier = "X-Shoal-Tier"

// StockHotKey is the hot-tier key of a symbol's quote.
func StockHotKey(symbol string) string { return "stocks/" + symbol }

// StockChange maps a committed stock event to the hot-tier key it
// changes; the event carries the new quote, which is what a read returns.
// Register it with the tier for fsm.DomainStocks.
func StockChange(e fsm.Event) (hottier.Change, bool) {
	return hottier.Change{Key: StockHotKey(e.Key), Index: e.Index, Data: e.Data,
		HasData: true}, true
}

func (s *Server) listStocks(w http.ResponseWriter, r *http.Request) {
	index, err := s.readBarrier(r)
	if err != nil {
		writeError(w, err)
		return
	}
	quotes, err := stocks.List(s.node.State())
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, index)
	writeJSON(w, http.StatusOK, map[string]any{"stocks": quotes, "index": index})
}

func checkSymbol(symbol string) error {
	if stocks.ValidSymbol(symbol) {
		return nil
	}
	if upper := strings.ToUpper(symbol); stocks.ValidSymbol(upper) {
		return badRequest("symbol %q: symbols are upper case; did you mean %s?", symbol, upper)
	}
	return badRequest("symbol %q: want 1 to 10 characters of A-Z, 0-9, '.' and '-'", symbol)
}
