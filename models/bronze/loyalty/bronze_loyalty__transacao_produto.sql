{{ lago_mago.bronze_cdc('loyalty', 'transacao_produto') }}
