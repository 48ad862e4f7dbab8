"""Joint CTC/attention decoding (Watanabe et al., 2017, "Hybrid CTC/Attention Architecture for End-to-End
Speech Recognition", sec. III-B and algorithm 2): the decoder proposes the next token, the encoder's CTC head
says how well the text so far matches the audio, and the search ranks by both,

    score(g + c) = score(g) + (1 - w) * log p_att(c | g) + w * (log psi(g + c) - log psi(g))

where psi(h) is the CTC prefix probability of h: the probability that the CTC paths over the whole clip
start with h's labels. An attention decoder alone is a strong language model that may write a fluent
sentence the audio does not hold; CTC alone hears the sounds but spells them badly. For <|endoftext|>, psi is
the probability of exactly g.

zoo's CTC head predicts UTF-8 bytes (zoo.speech.recipe) while the decoder writes BPE pieces, so extending a
prefix by a piece extends the CTC prefix by the piece's bytes, one after another. Only the decoder's
`candidates` most likely tokens per row are scored (ESPnet's pre-beam); the others are ruled out.

The prefix recursion (algorithm 2) over frames t = 1..T, for h = g + c:
    phi_t    = r^b_{t-1}(g) + (0 if g ends in c else r^n_{t-1}(g))
    r^n_t(h) = (r^n_{t-1}(h) + phi_t) x_t(c)
    r^b_t(h) = (r^b_{t-1}(h) + r^n_{t-1}(h)) x_t(blank)
    psi(h)   = sum_t phi_t x_t(c)
Both r recursions are first-order linear recurrences, so each is one cumulative log-sum-exp over the frames
(no Python loop over time): log r^n_t(h) = X_t + logcumsumexp_{s<=t}(log phi_s - X_{s-1}), X_t = sum_{u<=t}
log x_u(c), and the same for r^b with the blank.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zoo import decoding as core
from zoo.errors import InputError

# A padded frame (beyond a clip's end) emits the blank with certainty and nothing else: its label log-probs are
# this (not -inf, which would put inf - inf into the cumulative sums), so no path gains a label there.
PADDED_FRAME = -1.0e4
# The floor of log psi: a prefix the audio cannot hold at all (more bytes than frames, say) costs this much once,
# and below it CTC stops taking part (its increments are 0), so a search whose every candidate is impossible
# for CTC still ends, on the decoder's scores, instead of having no hypothesis left.
LOG_ZERO = -1.0e5


@dataclass(eq=False)
class Prefix:
    """The CTC prefix state of one hypothesis of one clip: log psi, its last byte (-1 before the first), and the
    recursion's r^n, r^b over frames 0..S, or (pending) where they are one byte short of it: (r_n rows, r_b rows,
    the row, the byte before)."""

    clip: int
    psi: float
    last: int
    r_n: torch.Tensor | None = None
    r_b: torch.Tensor | None = None
    pending: tuple | None = None


class CTCPrefixScorer(core.LogitProcessor):
    """Fuses the decoder's next-token log-probs with CTC prefix scores, as a logit processor of zoo.decoding:
    it returns final log-scores (returns_logprobs), which the beam search adds as they are.

    ctc_logprobs: (B, S, 257) log-probs of the CTC head (bytes 0-255, blank last) for B clips; audio_mask:
    (B, S), True on real frames (None: none padded). Row r of the search belongs to clip r // group (beam
    search and best_of keep `group` rows per clip). token_bytes[i]: the UTF-8 bytes of token i (ids past its
    end, the special and timestamp tokens, carry no text); eot: the end-of-text id.
    """

    needs_history = True
    returns_logprobs = True

    def __init__(self, ctc_logprobs: torch.Tensor, audio_mask: torch.Tensor | None, token_bytes: Sequence[bytes],
                 eot: int, weight: float, group: int = 1, candidates: int = 16):
        if not 0.0 < weight <= 1.0:
            raise InputError(f"CTC weight must be in (0, 1], got {weight}")
        x = ctc_logprobs.float()
        if audio_mask is not None:
            x = x.masked_fill(~audio_mask[..., None], PADDED_FRAME)
            x[..., -1] = x[..., -1].masked_fill(~audio_mask, 0.0)  # the blank: certain
        self.blank = x.shape[-1] - 1
        self.x = x.transpose(1, 2).contiguous()  # (B, C, S): x[clips, labels] is a (P, S) gather
        # cumulative label log-probs after a virtual frame 0: cumulative[b, c, t] = sum_{u <= t} x[b, c, u]
        self.cumulative = torch.cat([self.x.new_zeros(*self.x.shape[:2], 1), self.x.cumsum(dim=2)], dim=2)
        self.token_bytes, self.eot = token_bytes, eot
        self.weight, self.group, self.candidates = weight, group, candidates
        self.states: dict[tuple, Prefix] = {}  # (clip, tokens) -> its CTC prefix state

    # ------------------------------------------------------------------------------ the prefix recursion

    def _empty(self, clip: int) -> "Prefix":
        r_n = self.x.new_full((self.x.shape[2] + 1,), -math.inf)
        r_b = self.cumulative[clip, self.blank].clone()  # only blanks so far; r_b[0] = log 1
        return Prefix(clip, psi=0.0, last=-1, r_n=r_n, r_b=r_b)  # log psi(empty) = log 1

    def _extend(self, clips: torch.Tensor, r_n: torch.Tensor, r_b: torch.Tensor, last: torch.Tensor,
                labels: torch.Tensor, recursion: bool = True):
        """P prefixes g (r_n, r_b: (P, S + 1); last: (P,) their last byte, -1 for none) of clips (P,), each
        extended by one byte (labels (P,)) -> log psi(h) (P,) and, with recursion, r_n(h), r_b(h) (P, S + 1)."""
        x_c = self.x[clips, labels]  # (P, S)
        repeat = (last == labels)[:, None]
        phi = torch.logaddexp(r_b[:, :-1], r_n[:, :-1].masked_fill(repeat, -math.inf))  # (P, S): frames 1..S
        psi = torch.logsumexp(phi + x_c, dim=1).clamp(min=LOG_ZERO)
        if not recursion:
            return psi, None, None
        X_c = self.cumulative[clips, labels]  # (P, S + 1)
        X_b = self.cumulative[clips, self.blank]  # (P, S + 1)
        start = r_n.new_full((len(labels), 1), -math.inf)  # frame 0: nothing read yet
        new_n = torch.cat([start, X_c[:, 1:] + torch.logcumsumexp(phi - X_c[:, :-1], dim=1)], dim=1)
        new_b = torch.cat([start, X_b[:, 1:] + torch.logcumsumexp(new_n[:, :-1] - X_b[:, :-1], dim=1)], dim=1)
        return psi, new_n, new_b

    def _states(self, keys: list[tuple[int, tuple]], recursion: bool = True) -> "list[Prefix]":
        """The prefix state of each (clip, tokens), computing missing ones from their parents (tokens[:-1]), the
        extensions of one byte position batched together. recursion: also their r arrays (a parent's), not only
        psi (a candidate's: most candidates are never extended, so their last byte's recursion waits)."""
        for clip, tokens in keys:
            if not tokens and (clip, tokens) not in self.states:
                self.states[(clip, tokens)] = self._empty(clip)
        missing = [key for key in dict.fromkeys(keys) if key not in self.states]
        if missing:
            self._states([(clip, tokens[:-1]) for clip, tokens in missing])
            self._add(missing)
        states = [self.states[key] for key in keys]
        if recursion:
            self._finish(list(dict.fromkeys(state for state in states if state.r_n is None)))
        return states

    def _add(self, keys: list[tuple[int, tuple]]):
        """Compute the states of `keys` (clip, tokens), whose parents (tokens[:-1]) are known: the parents'
        recursions extended by the last token's bytes, one byte position at a time for all keys at once; at
        the last byte only psi."""
        parents = [self.states[(clip, tokens[:-1])] for clip, tokens in keys]
        news = []
        for (_, tokens), parent in zip(keys, parents):
            new = self.token_bytes[tokens[-1]] if tokens[-1] < len(self.token_bytes) else b""
            news.append(new.lstrip(b" ") if parent.last < 0 else new)  # CTC targets are stripped transcripts
        for key, parent, new in zip(keys, parents, news):
            if not new:  # no text (a timestamp, or a space before any text): the same prefix
                self.states[key] = parent
        work = [i for i, new in enumerate(news) if new]
        if not work:
            return
        device = self.x.device
        lengths = torch.tensor([len(news[i]) for i in work], device=device)
        longest = int(lengths.max())
        labels = torch.tensor([list(news[i]) + [-1] * (longest - len(news[i])) for i in work], device=device)
        clips = torch.tensor([keys[i][0] for i in work], device=device)
        last = torch.tensor([parents[i].last for i in work], device=device)
        r_n = torch.stack([parents[i].r_n for i in work])
        r_b = torch.stack([parents[i].r_b for i in work])
        psi = r_n.new_zeros(len(work))
        for j in range(longest):
            going_on = (lengths > j + 1).nonzero().squeeze(1)  # more bytes follow: the recursion is needed
            if len(going_on):
                byte = labels[going_on, j]
                _, r_n[going_on], r_b[going_on] = self._extend(clips[going_on], r_n[going_on], r_b[going_on],
                                                               last[going_on], byte)
                last[going_on] = byte
            ending = (lengths == j + 1).nonzero().squeeze(1)
            if len(ending):
                psi[ending] = self._extend(clips[ending], r_n[ending], r_b[ending], last[ending],
                                           labels[ending, j], recursion=False)[0]
        finals = labels[torch.arange(len(work)), lengths - 1].tolist()
        for row, (i, score, before, final) in enumerate(zip(work, psi.tolist(), last.tolist(), finals)):
            self.states[keys[i]] = Prefix(keys[i][0], psi=score, last=final, pending=(r_n, r_b, row, before))

    def _finish(self, states: "list[Prefix]"):
        """Run the last byte's recursion of states that only have psi (they became parents)."""
        if not states:
            return
        device = self.x.device
        clips = torch.tensor([s.clip for s in states], device=device)
        r_n = torch.stack([s.pending[0][s.pending[2]] for s in states])
        r_b = torch.stack([s.pending[1][s.pending[2]] for s in states])
        before = torch.tensor([s.pending[3] for s in states], device=device)
        labels = torch.tensor([s.last for s in states], device=device)
        _, r_n, r_b = self._extend(clips, r_n, r_b, before, labels)
        for state, n, b in zip(states, r_n.unbind(0), r_b.unbind(0)):
            state.r_n, state.r_b, state.pending = n, b, None

    def full_logprob(self, state: "Prefix") -> float:
        """log p_ctc(g): all the CTC paths over the clip that read exactly g (its prefix state at the last frame)."""
        return max(float(torch.logaddexp(state.r_n[-1], state.r_b[-1])), LOG_ZERO)

    # ------------------------------------------------------------------------------ the logit processor

    def __call__(self, logits: torch.Tensor, seen, history) -> torch.Tensor:
        logprobs = logits.float().log_softmax(dim=-1)
        R, V = logprobs.shape
        tokens = history.tokens.tolist() if history.step > 0 else [[] for _ in range(R)]
        prefixes = [(row // self.group, tuple(t)) for row, t in enumerate(tokens)]
        k = min(self.candidates, V)
        top, ids = logprobs.topk(k, dim=-1)
        finite = top.isfinite().tolist()
        ids_list = ids.tolist()
        parents = self._states(prefixes)
        keys, where = [], []
        ctc = [[-math.inf] * k for _ in range(R)]  # log psi(g + c) - log psi(g) per candidate
        for row, (clip, prefix) in enumerate(prefixes):
            for j, (token, ok) in enumerate(zip(ids_list[row], finite[row])):
                if ok and token == self.eot:  # the end: psi(g + eot) is the probability of exactly g
                    ctc[row][j] = self.full_logprob(parents[row]) - parents[row].psi
                elif ok:
                    keys.append((clip, prefix + (token,)))
                    where.append((row, j))
        for (row, j), child in zip(where, self._states(keys, recursion=False)):
            ctc[row][j] = child.psi - parents[row].psi
        ctc = torch.tensor(ctc)
        fused = (1 - self.weight) * top.cpu() + self.weight * ctc
        out = torch.full_like(logprobs, -math.inf)
        out.scatter_(1, ids, fused.to(out.dtype).to(out.device))
        # keep only the states the next step can reach (this step's parents and children)
        self.states = {key: self.states[key] for key in {*prefixes, *keys}}
        return out
