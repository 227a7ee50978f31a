"""The validators' quick paths (bank_card.is_valid's prefix and scheme tests read once,
cn_resident_id.is_valid's clock looked at only for a recent birth year) decide exactly as the
plain composition of their documented rules, on random candidates shaped to reach every branch."""

from __future__ import annotations

import random
from datetime import date, timedelta

from dereg.classify import bank_card, cn_resident_id


def _card_reference(text: str) -> bool:
    number = bank_card.compact(text)
    return (
        16 <= len(number) <= 19
        and number.isdigit()
        and bank_card._known_prefix(number)
        and bank_card._scheme_length_ok(number)
        and bank_card.luhn_ok(number)
        and len(set(number)) > 2
        and not bank_card._resident_id_shaped(number)
    )


def _resident_reference(text: str) -> bool:
    number = cn_resident_id.compact(text)
    if len(number) == 18:
        if not number[:17].isdigit() or number[17] != cn_resident_id.calc_check_digit(number):
            return False
    elif len(number) != 15 or not number.isdigit() or number[:6] not in cn_resident_id.regions():
        return False
    if number[:2] not in cn_resident_id.PROVINCES or number[2:6] == "0000":
        return False
    born = cn_resident_id.birth_date(number)
    return born is not None and date(1900, 1, 1) <= born <= date.today()


def _candidates(n: int):
    rng = random.Random(3)
    this_year = str(date.today().year)
    heads = ["", "4", "51", "55", "62", "2221", "2720", "2719", "35", "11", "44", "99", "3", "6"]
    heads += ["1101051949", "11010519991231", "110105" + this_year, "1101052099", "1101051899"]
    for _ in range(n):
        head = rng.choice(heads)
        digits = head + "".join(
            rng.choice("0123456789") for _ in range(max(0, rng.choice((15, 16, 17, 18, 19, 20)) - len(head)))
        )
        yield digits
        if digits[:-1].isdigit():  # one that passes Luhn, one that passes the ID check digit
            yield digits[:-1] + next(d for d in "0123456789" if bank_card.luhn_ok(digits[:-1] + d))
        if len(digits) >= 17:
            yield digits[:17] + cn_resident_id.calc_check_digit(digits)
        yield digits[:4] + " " + digits[4:8] + " " + digits[8:12] + " " + digits[12:]


def _born_around_today() -> list[str]:
    """IDs born a little before, on and after today: the clock decides these."""
    days = [date.today() + timedelta(days=k) for k in (-400, -1, 0, 1, 20, 400)]
    heads = ["110105" + d.strftime("%Y%m%d") + "123" for d in days]
    return [h + cn_resident_id.calc_check_digit(h) for h in heads]


def test_quick_paths_decide_as_the_rules():
    valid_cards = valid_ids = 0
    for candidate in [*_born_around_today(), *_candidates(3000)]:
        assert bank_card.is_valid(candidate) == _card_reference(candidate), candidate
        assert cn_resident_id.is_valid(candidate) == _resident_reference(candidate), candidate
        valid_cards += _card_reference(candidate)
        valid_ids += _resident_reference(candidate)
    assert valid_cards > 100 and valid_ids > 100  # both sides of every test were reached
