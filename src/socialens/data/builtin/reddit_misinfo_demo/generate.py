"""Writes comments.csv, the built-in demo data: synthetic Reddit-style comments about three false
claims, labelled belief / debunk / other. Seeded, so the shipped file is exactly its output
(tests/data/test_builtin_demo.py checks that):

    python src/socialens/data/builtin/reddit_misinfo_demo/generate.py

Why it is built this way: a demo whose labels follow from word counts (an earlier hand-written
version) lets TF-IDF win at 0.91 macro-F1 and shows nothing about the families. Here the same
sentences, the same claim and the same argument appear under every label; what decides the label is
how the comment relates to them: a debunk quotes the claim to reject it, sarcasm says the opposite
of its words, a hedged comment still endorses the claim, an "other" comment reports what someone
believes, asks about an argument, or reuses the claim's words off topic. Openers such as "Oh sure",
"Funny how", "Call me crazy" and "I used to" occur in all three labels. Only the standard library
is used, so the file regenerates anywhere.
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

SEED = 15
OUT = Path(__file__).with_name("comments.csv")
# per topic: 30% belief, 35% debunk, 35% other, as in the README
COUNTS = {"belief": 120, "debunk": 140, "other": 140}
ID_PREFIX = {"climate": "clim", "vaccines": "vacc", "immigration": "immi"}

TOPICS: dict[str, dict[str, list[str]]] = {
    "climate": {
        # remarks that reuse the claim's words but take no side on it (other, in any frame)
        "aside": [
            "the grant money at my university all goes to the football team",
            "the climate in my office is the real hoax",
            "climate scientists have the worst parking spots on campus",
            "this sub needs stricter mods",
            "research grants take a year to come through",
            "the warming drawer in my new oven is broken",
        ],
        "denial": [
            "climate change is not a hoax",
            "the warming is measured, not invented for grants",
            "nobody is faking the temperature data",
        ],
        "claim": [
            "climate change is a hoax",
            "the whole climate crisis is made up for grant money",
            "global warming is a scam to keep the research grants coming",
            "climate science is basically a grant-money racket",
            "scientists fake the warming data to get funded",
            "the climate emergency was invented by academics who need funding",
        ],
        "pro": [
            "the Climategate emails showed them hiding the decline",
            "they switched from global warming to climate change once the warming stopped",
            "the climate models have run hot for thirty years",
            "in the 70s the same people were predicting an ice age",
            "the 97% consensus number came from counting paper abstracts",
            "NOAA keeps adjusting the old temperature records",
            "no grant committee funds a study that finds nothing is wrong",
            "Al Gore said the Arctic would be ice-free by 2014",
        ],
        "con": [
            "eight separate inquiries into Climategate found no manipulation of data",
            "the IPCC has had climate change in its name since 1988",
            "a 2020 check of 17 old climate models found most got the warming right",
            "the 70s ice age papers were a handful against dozens predicting warming",
            "Exxon's own scientists projected the warming back in the 80s",
            "the adjustments to the old temperature records actually lower the long-term trend",
            "a scientist who overturned the consensus would get far more money and fame",
            "satellite, weather balloon and ocean buoy records all show the same warming",
        ],
        "anecdote_pro": [
            "My grandad farmed the same land for sixty years and says the weather is no different",
            "I sat on a university grants panel once and every climate proposal had to promise a catastrophe",
            "Our town was told twenty years ago the beach would be underwater and I walked on it this morning",
        ],
        "anecdote_con": [
            "I measure a glacier for a living and it has lost forty metres since 2010",
            "My PhD stipend in atmospheric physics was 28k a year, nobody gets rich off climate grants",
            "I farm too and my planting dates have moved two weeks in fifteen years",
        ],
        "off": [
            "The climate in my office is the real crisis, nobody has spoken to the manager in a week.",
            "Speaking of warming, my AC died this morning and it is 34 degrees in here.",
            "The climate of this sub has changed a lot since 2019, and not for the better.",
            "My grant application got rejected today so no research money for me either.",
            "Hoax or not, I just want it to stop raining so I can mow the lawn.",
            "Unrelated, but does anyone know a good climate-controlled storage place in Denver?",
        ],
        "noun": ["climate", "climate change", "global warming"],
    },
    "vaccines": {
        # remarks that reuse the claim's words but take no side on it (other, in any frame)
        "aside": [
            "the autism centre near me needs more volunteers",
            "my dog's vaccines cost a fortune",
            "the MMR appointment slots at our clinic are always full",
            "this sub needs stricter mods",
            "vaccine ads on TV are weirdly cheerful",
            "my autistic son's school is doing a great job",
        ],
        "denial": [
            "vaccines do not cause autism",
            "there is no link between the MMR and autism",
            "the MMR has never been shown to cause autism",
        ],
        "claim": [
            "vaccines cause autism",
            "the MMR shot causes autism",
            "vaccines are behind the autism epidemic",
            "the MMR vaccine gave a whole generation autism",
            "autism comes from the childhood vaccine schedule",
            "they know the MMR vaccine causes autism and hide it",
        ],
        "pro": [
            "Wakefield found the link between MMR and autism in 1998",
            "the vaccine court has paid out for brain injuries",
            "autism rates went up exactly as the vaccine schedule grew",
            "thimerosal has mercury in it",
            "the vaccine makers cannot be sued",
            "the CDC whistleblower said they hid the data on black boys",
            "the package insert lists autism as a reported event",
            "kids get 72 doses before they turn 18 now",
        ],
        "con": [
            "the Wakefield paper was retracted and he lost his medical licence for faking it",
            "a Danish study of 650,000 children found no link between MMR and autism",
            "thimerosal was taken out of childhood vaccines in 2001 and autism diagnoses kept rising",
            "autism signs are visible in brain scans and home videos before the MMR is given",
            "the rise in autism rates tracks the wider diagnostic criteria from 1994 and 2013",
            "the vaccine court pays out without proof because it is a no-fault system",
            "the package insert lists everything anyone reported, not what the vaccine caused",
            "the CDC data reanalysis by the whistleblower was itself retracted",
        ],
        "anecdote_pro": [
            "My nephew stopped talking two weeks after his MMR and nobody can tell me why",
            "I was a nurse for twelve years and I saw kids change after their 12-month shots",
            "My neighbour's son was fine until his shots and now he is nonverbal",
        ],
        "anecdote_con": [
            "My son is autistic and unvaccinated, my daughter is vaccinated and not autistic",
            "I'm a paediatric nurse and we see the signs of autism long before the MMR appointment",
            "My autistic brother was diagnosed in 1979, before most of today's schedule existed",
        ],
        "off": [
            "My cat's vaccine appointment cost 180 dollars, which is the real scandal here.",
            "Autism acceptance month is coming up and my kid's school is doing a great job with it.",
            "Shot of espresso or shot of tequila, that is the only shot question I can handle today.",
            "Unrelated, but the waiting room at our clinic has the best fish tank I've ever seen.",
            "Does anyone know if the pharmacy on 5th does flu shots without an appointment?",
            "My kid just asked me what autism is after a show at school and I'm proud of how she put it.",
        ],
        "noun": ["vaccines", "the MMR", "vaccine safety"],
    },
    "immigration": {
        # remarks that reuse the claim's words but take no side on it (other, in any frame)
        "aside": [
            "the immigration office in my city is badly understaffed",
            "violent crime shows on TV are all the same now",
            "my immigrant grandma makes the best dumplings",
            "this sub needs stricter mods",
            "crime podcasts are most of what I listen to",
            "the visa fees for immigrants are far too high",
        ],
        "denial": [
            "immigrants do not commit most violent crime",
            "most violent crime is committed by people born here",
            "immigrants are not the reason for violent crime",
        ],
        "claim": [
            "immigrants are responsible for most violent crime",
            "most violent crime is committed by immigrants",
            "the immigrants are why violent crime is up",
            "immigrants commit the bulk of the violent crime",
            "violent crime is mostly an immigrant problem",
            "letting immigrants in means letting violent crime in",
        ],
        "pro": [
            "Sweden's crime went up after the 2015 arrivals",
            "sanctuary cities refuse to hand criminals over to ICE",
            "the news stopped reporting the nationality of suspects",
            "the border towns have the worst violent crime",
            "Germany had the Cologne new year attacks",
            "a third of federal prisoners are not citizens",
            "every week there is another story about a migrant stabbing someone",
            "the cartels come in with the caravans",
        ],
        "con": [
            "Texas arrest records show immigrants are arrested for violent crime at lower rates than natives",
            "US violent crime fell through the 90s and 2000s while immigration rose",
            "El Paso is one of the safest big cities in the country",
            "the federal prison figure is mostly immigration offences, not violent crime",
            "studies of sanctuary counties found no rise in crime",
            "most violent crime in Sweden is committed by people born there",
            "the Cologne figures are real but one night is not most violent crime",
            "the cartels mostly smuggle drugs through legal ports of entry, not with caravans",
        ],
        "anecdote_pro": [
            "My town was quiet until they opened the shelter and now we lock our doors",
            "I drove a cab for ten years and every time I got robbed it was someone who just arrived",
            "My cousin is a cop in a border county and he says they fill the jail",
        ],
        "anecdote_con": [
            "I'm a public defender and most of my violent crime clients were born two streets from the court",
            "I worked as a prison guard for eight years and the violent wings were mostly locals",
            "My neighbourhood is half immigrants and it is the safest place I've ever lived",
        ],
        "off": [
            "My grandparents immigrated in 1962 and the only crime they committed was against good pasta.",
            "Immigration office wait times are the real violent crime, four hours for a stamp.",
            "Unrelated, but the taco truck that opened near my work is incredible.",
            "I moved from Ohio to Oregon last year, does that make me an immigrant? The rain is criminal.",
            "My dog is an immigrant from a shelter in Mexico and he is a menace only to socks.",
            "Does anyone know how long a visa renewal takes these days? Asking for my wife.",
        ],
        "noun": ["immigration", "immigrant crime", "crime stats"],
    },
}

WHO = ["uncle", "coworker", "neighbour", "sister-in-law", "dad", "landlord", "barber", "old roommate"]
OTHER_WHO = ["mom", "brother", "best friend", "boss", "cousin", "wife", "husband"]

# Frames around one argument {x} ({X}: capitalised). An endorsing frame keeps the argument's side,
# a rejecting one (sarcasm, scare quotes, "total nonsense") turns it: rejecting a debunk is belief.
# Every frame is used with arguments of both sides, so neither a frame's words nor an argument's
# words give the label away; only the two together do (an XOR no linear bag of words can learn).
ENDORSE = [
    "{X}. Simple as that.",
    "This. {X}.",
    "Finally someone said it: {x}.",
    "I'm not saying it's settled, but {x}.",
    "I used to doubt it, but {x}.",
    "Exactly. {X}, and people still argue.",
    "Call me crazy but {x}.",
    "Funny how nobody mentions that {x}.",
    "Read the actual sources: {x}.",
    "Honestly? {X}. End of story.",
    "Not a scientist, but as far as I can tell {x}.",
    "Say what you want, {x}.",
    "My {who} was right all along: {x}.",
]
REJECT = [
    '"{X}"? Come on.',
    "People keep saying {x}. Total nonsense.",
    "Oh sure, {x}. And I'm the queen of England.",
    "Yeah right, {x}. Next you'll tell me the earth is flat.",
    "Anyone who believes {x} has not looked at the evidence.",
    '"{X}" is what they want you to believe.',
    "I used to believe {x}, then I grew up.",
    "Funny how the same people who say {x} never show a source.",
    "Call me crazy but I don't buy that {x}.",
    "Honestly? The line that {x} is pure spin.",
    "Imagine still thinking {x} in this year.",
    "Sure, {x}, and pigs fly.",
    "My {who} keeps telling me {x}. Total nonsense.",
]
# other: reporting, asking, moderating, joking, off topic; {x} is an argument of either side, {y}
# one of the other side
OTHER = [
    "My {who} keeps saying {x}. I just nod and change the subject.",
    "Is it actually true that {x}? Not taking sides, I keep seeing it.",
    "Does anyone have a source for the claim that {x}? Genuinely asking.",
    "Wait, who first said {x}? I need the original quote for a class.",
    "My {who} posted that {x} and the family group chat exploded. I muted it.",
    "Can someone explain both sides? One video says {x}, another says {y}, and I'm lost.",
    "I'm not saying it's true and I'm not saying it's false that {x}, I'm saying I'm tired.",
    "Saw a poster today saying {x}. Someone had drawn a moustache on it.",
    "Funny how every thread about {noun} turns into the same five people yelling.",
    "Oh sure, let's argue about {noun} at 2am instead of sleeping. Classic reddit.",
    "Call me crazy but I come to these {noun} threads just for the username puns.",
    "Honestly? I don't know enough about {noun} to have an opinion. Just here to read.",
    "This is the third thread this week about whether {x}. Mods, megathread please?",
    "{off}",
    "{off} Anyway, carry on.",
    "Reported for the insults, not the opinion. You can think {x} without calling people names.",
    "Yeah right, like anyone in this thread reads past the headline.",
    "I used to argue about {noun} online, until my blood pressure said no.",
    "My {who} and my {who2} had a whole fight over whether {x}. I left early.",
    "Not a scientist, so I'll wait for someone who is to tell me if {x}.",
]
# share of each label's comments made each way (the rest of belief / debunk: plain statements)
ENDORSED_SHARE, REJECTED_SHARE = 0.45, 0.45
# share of "other" comments that put a side-less opinion ({aside}) in an endorsing or rejecting frame
ASIDE_SHARE = 0.4

SUBREDDITS = {
    "climate": {
        "belief": ["r/climateskeptics", "r/conspiracy", "r/news", "r/politics"],
        "any": ["r/climate", "r/science", "r/worldnews", "r/environment", "r/politics", "r/farming"],
    },
    "vaccines": {
        "belief": ["r/DebateVaccines", "r/conspiracy", "r/Parenting", "r/news"],
        "any": ["r/Parenting", "r/science", "r/medicine", "r/news", "r/AskDocs", "r/autism"],
    },
    "immigration": {
        "belief": ["r/Conservative", "r/conspiracy", "r/news", "r/europe"],
        "any": ["r/politics", "r/news", "r/europe", "r/immigration", "r/texas", "r/sweden"],
    },
}

SUFFIXES = [" lol", " smh", " tbh", " 🙄", " Edit: typo.", " /rant", " 🤷", " Thoughts?"]
PREFIXES = ["Ok so ", "Look, ", "Lol ", "Idk, ", "Serious question: ", "Ugh. "]


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def typo(text: str, rng: random.Random) -> str:
    """Swap two letters inside one longer word, as fast typing does."""
    words = text.split(" ")
    long_words = [i for i, word in enumerate(words) if len(word) > 5 and word.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    word = words[i]
    j = rng.randrange(1, len(word) - 2)
    words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def styled(text: str, rng: random.Random) -> str:
    """Reddit style, applied the same way to every label so that it is no cue."""
    if rng.random() < 0.12:
        text = rng.choice(PREFIXES) + text[:1].lower() + text[1:]
    if rng.random() < 0.15:
        text = typo(text, rng)
    if rng.random() < 0.18:
        text = text.lower()
    if rng.random() < 0.15:
        text = text.rstrip(".")
    if rng.random() < 0.12:
        text += rng.choice(SUFFIXES)
    return re.sub(r"\.\.(?!\.)", ".", text.replace("?.", "?").replace("!.", "!"))


def side_of(label: str) -> str:
    return {"belief": "pro", "debunk": "con"}[label]


def argument(bank: dict[str, list[str]], side: str, rng: random.Random) -> str:
    """A clause of one side: for belief the claim or an argument for it, for debunk a refutation."""
    pool = bank["claim"] + bank["pro"] if side == "pro" else bank["con"] + bank["denial"]
    return rng.choice(pool)


def comment(label: str, bank: dict[str, list[str]], rng: random.Random) -> str:
    """One comment of ``label``: an argument in an endorsing or a rejecting frame, a plain
    statement (one or two arguments, or a personal anecdote), or an "other" frame."""
    if label == "other":
        if rng.random() < ASIDE_SHARE:
            x = rng.choice(bank["aside"])
            return rng.choice(ENDORSE + REJECT).format(x=x, X=capital(x), who=rng.choice(WHO))
        side = rng.choice(["pro", "con"])
        values = {
            "x": argument(bank, side, rng),
            "y": argument(bank, "con" if side == "pro" else "pro", rng),
            "off": rng.choice(bank["off"]),
            "noun": rng.choice(bank["noun"]),
            "who": rng.choice(WHO),
            "who2": rng.choice(OTHER_WHO),
        }
        return rng.choice(OTHER).format(**values)
    side = side_of(label)
    turned = "con" if side == "pro" else "pro"
    roll = rng.random()
    if roll < ENDORSED_SHARE:
        x = argument(bank, side, rng)
        return rng.choice(ENDORSE).format(x=x, X=capital(x), who=rng.choice(WHO))
    if roll < ENDORSED_SHARE + REJECTED_SHARE:
        x = argument(bank, turned, rng)
        return rng.choice(REJECT).format(x=x, X=capital(x), who=rng.choice(WHO))
    anecdote = bank["anecdote_pro" if side == "pro" else "anecdote_con"]
    first = rng.choice(anecdote) if rng.random() < 0.3 else capital(argument(bank, side, rng))
    second = argument(bank, side, rng)
    if second.casefold() in first.casefold():
        return f"{first}."
    return f"{first}. {rng.choice(['Also', 'And', 'Plus', 'Not to mention'])} {second}."


def normalised(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def generate(seed: int = SEED) -> list[dict[str, str]]:
    """Every row of comments.csv, in file order: per topic, the labels interleaved at random."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    for topic, bank in TOPICS.items():
        labelled: list[tuple[str, str]] = []
        for label, count in COUNTS.items():
            made = 0
            while made < count:
                text = styled(comment(label, bank, rng), rng)
                key = normalised(text)
                if key in seen:  # prepare would drop it as a duplicate
                    continue
                seen.add(key)
                labelled.append((label, text))
                made += 1
        rng.shuffle(labelled)
        for number, (label, text) in enumerate(labelled, 1):
            places = SUBREDDITS[topic]
            pool = places["belief"] if label == "belief" and rng.random() < 0.5 else places["any"]
            rows.append(
                {
                    "id": f"{ID_PREFIX[topic]}-{number:03d}",
                    "text": text,
                    "label": label,
                    "topic": topic,
                    "subreddit": rng.choice(pool),
                }
            )
    return rows


def write(rows: list[dict[str, str]], path: Path = OUT) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "label", "topic", "subreddit"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    write(generate())
    print(f"wrote {OUT}")
