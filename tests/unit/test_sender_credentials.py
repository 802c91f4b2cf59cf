"""When the sender renews its access token: at three quarters of its lifetime, and always
early enough that the token it holds stays usable while home is briefly down."""

from __future__ import annotations

import pytest

from dmr_appliance.client.credentials import RENEW_AT, STILL_USABLE, renew_after


def test_a_default_token_is_renewed_at_three_quarters_of_its_lifetime():
    assert renew_after(900) == pytest.approx(RENEW_AT * 900)  # 675 s


@pytest.mark.parametrize("lifetime", [11, 15, 20, 30, 40, 60, 900, 3600])
def test_a_token_is_renewed_while_it_is_still_usable_for_a_while(lifetime):
    # Renewal fails while home is down; the held token is used until STILL_USABLE before
    # its expiry. Between the two there must be time: at least STILL_USABLE seconds.
    usable_until = lifetime - STILL_USABLE
    assert usable_until - renew_after(lifetime) >= STILL_USABLE - 1e-9


def test_a_twenty_second_token_leaves_five_seconds_to_ride_out_an_outage():
    # home_ha's tokens: renewed at 10 s, usable until 15 s (at 15 s both met before)
    assert renew_after(20) == pytest.approx(10)


@pytest.mark.parametrize("lifetime", [0, 5, 10])
def test_a_token_too_short_for_any_slack_is_renewed_at_every_use(lifetime):
    assert renew_after(lifetime) == 0
