{{ lago_mago.history_from_log('loyalty', 'produtos') }}
