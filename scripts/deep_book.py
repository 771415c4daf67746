#!/usr/bin/env python3
"""A deep book as JSONL orders (CONTRACT.md), for scripts/bench.sh.

One symbol, DEEP: a million GTC orders resting up to 20,000 ticks either
side of the mid, then a million messages of exchange-core's mix as the
criterion book bench makes them (9% GTC and 3% IOC near the mid, 6% cancel,
82% move to a new price near the mid). What the books operator's fetching
ahead is for: every order's slot, queue neighbours and levels lie far
apart in memory.

Usage: scripts/deep_book.py OUT.jsonl
"""
import random
import sys

RESTING = 1_000_000
MESSAGES = 1_000_000
MID = 100_000  # in ticks of 0.01


def main(path):
    rng = random.Random(42)
    live = []  # (id, side) of resting orders
    ts = 1_700_000_000_000
    next_id = 0
    with open(path, "w") as out:

        def price(side, away):
            ticks = MID - away if side == "buy" else MID + away
            return f"{ticks / 100:.2f}"

        def new(side, away, tif):
            nonlocal next_id
            next_id += 1
            qty = rng.randrange(1, 100)
            out.write(
                f'{{"type":"new","order_id":"o{next_id}","symbol":"DEEP","side":"{side}",'
                f'"qty":"{qty}","price":"{price(side, away)}","tif":"{tif}","ts":{ts}}}\n'
            )
            if tif == "gtc":
                live.append((next_id, side))

        for _ in range(RESTING):
            ts += 1
            new(rng.choice(["buy", "sell"]), rng.randrange(1, 20_000), "gtc")
        for _ in range(MESSAGES):
            ts += 1
            roll = rng.randint(1, 100)
            if roll <= 12:
                # GTC rests near the mid; IOC crosses it.
                ioc = roll >= 10
                away = -rng.randrange(0, 5) if ioc else rng.randrange(1, 200)
                new(rng.choice(["buy", "sell"]), away, "ioc" if ioc else "gtc")
            elif roll <= 18:
                k = rng.randrange(len(live))
                live[k], live[-1] = live[-1], live[k]
                order, _ = live.pop()
                out.write(f'{{"type":"cancel","order_id":"o{order}","symbol":"DEEP","ts":{ts}}}\n')
            else:
                order, side = live[rng.randrange(len(live))]
                away = rng.randrange(1, 200)
                out.write(
                    f'{{"type":"replace","order_id":"o{order}","symbol":"DEEP",'
                    f'"price":"{price(side, away)}","ts":{ts}}}\n'
                )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
