"""The pluggable kinds of the service's stack, one registry per kind of part.

Each kind lives in one module that pairs its name with everything the rest of the service asks of
it: the rules its settings must meet, the checks it adds to the status page, the pipelines it runs
and how its implementation is constructed from the service's adapters. A registry maps names to
kinds; adding a kind is its module plus one line in the registry.
"""
