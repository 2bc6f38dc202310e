"""Prompts, parsing and a quality score for the content the backend generates.

Pure functions (no Flask, no metrics), so they are the same for both LLM clients.
"""

from __future__ import annotations

import hashlib
import html
import re

#: Longest topic accepted, in characters: prompts stay small and cache keys bounded.
MAX_TOPIC_LENGTH = 200

_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*(.+?)\s*$")


def clean_topic(value: object) -> str | None:
    """A usable topic from request input, or ``None`` if it is not one."""
    if not isinstance(value, str):
        return None
    topic = " ".join(value.split())
    if not topic or len(topic) > MAX_TOPIC_LENGTH:
        return None
    return topic


def subtopics_prompt(topic: str) -> str:
    return f"List eight subtopics to learn, one per line, numbered, for the topic: {topic}"


def explanation_prompt(topic: str, subtopic: str | None) -> str:
    subject = f"{subtopic} (in {topic})" if subtopic else topic
    return f"Explain clearly for a learner, in a few short paragraphs: {subject}"


def image_prompt(topic: str) -> str:
    return f"Describe in one sentence a simple illustration for the topic: {topic}"


def parse_subtopics(text: str, limit: int = 8) -> list[str]:
    """The items of a numbered or bulleted list (the title up to a colon), at most *limit*."""
    items = []
    for line in text.splitlines():
        match = _NUMBERED.match(line)
        if match:
            item = match.group(1).split(":", 1)[0].strip().strip("*").strip()
            if item:
                items.append(item)
    return items[:limit]


def quality_score(text: str, *, expected_items: int = 0) -> float:
    """A 0-1 score of a generated text: long enough, varied, and with the expected list.

    A heuristic, enough to watch the distribution move when the model or prompt changes.
    """
    words = text.split()
    if not words:
        return 0.0
    length = min(len(words) / 60.0, 1.0)
    variety = len({w.lower() for w in words}) / len(words)
    score = 0.5 * length + 0.5 * variety
    if expected_items:
        score *= min(len(parse_subtopics(text)) / expected_items, 1.0)
    return round(min(max(score, 0.0), 1.0), 3)


def illustration_svg(topic: str, caption: str) -> str:
    """A small deterministic SVG for *topic*: colours from its hash, *caption* below."""
    digest = hashlib.sha256(topic.encode()).digest()
    hue = digest[0] * 360 // 256
    shapes = []
    for i in range(5):
        x, y, r = 20 + digest[i + 1] % 200, 20 + digest[i + 6] % 100, 10 + digest[i + 11] % 30
        shapes.append(
            f'<circle cx="{x}" cy="{y}" r="{r}" fill="hsl({(hue + 40 * i) % 360},70%,60%)" '
            'fill-opacity="0.8"/>'
        )
    text = html.escape(caption[:80])
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="160" viewBox="0 0 240 160">'
        f'<rect width="240" height="160" fill="hsl({hue},40%,95%)"/>{"".join(shapes)}'
        f'<text x="8" y="152" font-size="9" font-family="sans-serif">{text}</text></svg>'
    )
