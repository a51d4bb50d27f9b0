"""Actions: what postwatch does about an incident, each step journaled before and after.

::

    alert -> ActionRequest -> Policy.decide -> steps -> ActionRunner -> journal
                                     |- lock:<backend>  lockmap, dovecot, sqllock, command
                                     |- hold            hold (postqueue -j, postsuper -h -)
                                     |- ban             banlog (-> fail2ban filter)
                                     `- notify          notice -> notify (Apprise)

``subject`` checks every name before it reaches a map file, SQL, a command or a message;
``settings`` reads ``[actions]`` and builds the runner; ``commands`` holds the click
commands ``lock``, ``unlock``, ``queue``, ``fail2ban-hook`` and ``actions``.
"""
